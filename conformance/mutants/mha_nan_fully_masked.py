"""Planted bug: the masked softmax is a plain ``softmax(scores.masked_fill(~keep, -inf))``, so a
sample whose keys are all padding gets NaN (softmax of all -inf), although the target declares the
project convention ``fully_masked_row = "zero"``.

Rejected by: attention.fully-masked-row (check ``mha.fully-masked-row``).
"""

import math
from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants.mha_nan_padding_matmul import reference_mha_with
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mha.fully-masked-row",)


def plain_softmax_kernel(q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None) -> tuple[Tensor, Tensor]:
    """The bug: no special case for rows without a visible key."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


class MhaNanFullyMaskedMutant(ReferenceAdapter):
    """Reference MHA with a NaN-producing masked softmax."""

    name = "mutant.mha-nan-fully-masked"
    capabilities = frozenset({Capability.MHA})

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """Reference MHA with ``plain_softmax_kernel``."""
        return reference_mha_with(plain_softmax_kernel, d_model, num_heads, state, device, dtype)


def make() -> MhaNanFullyMaskedMutant:
    """Factory for ``--impl mutant.mha-nan-fully-masked``."""
    return MhaNanFullyMaskedMutant()
