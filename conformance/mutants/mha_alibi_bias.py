"""Planted bug: a linear distance bias (ALiBi, -slope * |i - j| with slope 2^-(head+1)) is added
to the scores of a layer whose contract is position-free attention, cross-attention included, so
memory positions get a positional bias.

Self-attention is no longer permutation-equivariant, and permuting the memory moves the outputs.
Rejected by: attention.permutation-equivariance (check ``mha.permutation-equivariance``),
attention.cross.memory-permutation-invariant (check ``mha.cross.memory-permutation``).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants.mha_nan_padding_matmul import reference_mha_with
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mha.permutation-equivariance", "mha.cross.memory-permutation")


def alibi_kernel(q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None) -> tuple[Tensor, Tensor]:
    """The bug: scores + ALiBi bias, masked positions at -inf."""
    h, nq, nk = q.shape[1], q.shape[-2], k.shape[-2]
    slopes = 2.0 ** -torch.arange(1, h + 1, dtype=q.dtype, device=q.device)
    i = torch.arange(nq, device=q.device)[:, None]
    j = torch.arange(nk, device=q.device)[None, :]
    bias = -slopes[:, None, None] * (i - j).abs().to(q.dtype)  # [h, nq, nk]
    if keep is not None:
        bias = torch.where(keep, bias, torch.full((), float("-inf"), dtype=q.dtype, device=q.device))
    out, weights = scaled_dot_product_attention(q, k, v, bias)
    return out, weights


class MhaAlibiBiasMutant(ReferenceAdapter):
    """Reference MHA with an ALiBi bias on every score."""

    name = "mutant.mha-alibi-bias"
    capabilities = frozenset({Capability.MHA})

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """Reference MHA with ``alibi_kernel``."""
        return reference_mha_with(alibi_kernel, d_model, num_heads, state, device, dtype)


def make() -> MhaAlibiBiasMutant:
    """Factory for ``--impl mutant.mha-alibi-bias``."""
    return MhaAlibiBiasMutant()
