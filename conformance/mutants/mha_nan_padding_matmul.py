"""Planted bug: multi-head attention sums the values with a plain ``weights @ v``. Padded keys get
weight exactly 0, but 0 * NaN = NaN: a NaN in padded memory (a NaN pad embedding) poisons every
output row.

Random or huge finite pad contents pass; only NaN/Inf contents expose it.
Rejected by: mask.padding.invariance (check ``mha.padding.nan-contents``).

Also home of ``reference_mha_with``, the reference layer with a swappable attention kernel that
the other ``mha_*`` mutants plant their bugs in.
"""

from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.masks import combine_masks, key_padding_to_attention_mask
from transformer_conformance.reference.multihead import MultiHeadAttention, merge_heads
from transformer_conformance.targets.reference import ReferenceAdapter, _build

#: (q, k, v [b, h, n, d], keep [.., nq, nk] | None) -> (heads [b, h, nq, d], weights [b, h, nq, nk]).
Kernel = Callable[[Tensor, Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor]]

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mha.padding.nan-contents",)


def reference_mha_with(
    kernel: Kernel,
    d_model: int,
    num_heads: int,
    state: dict[str, Tensor] | None,
    device: torch.device,
    dtype: torch.dtype,
) -> Callable[..., tuple[Tensor, Tensor | None]]:
    """The reference MHA (canonical weights, key padding AND attn_mask) with ``kernel`` as attention."""
    module = _build(lambda: MultiHeadAttention(d_model, num_heads), state, device, dtype)
    assert isinstance(module, MultiHeadAttention)

    def run(
        x_q: Tensor, x_kv: Tensor, key_padding: Tensor | None = None, attn_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        padding = None if key_padding is None else key_padding_to_attention_mask(key_padding)
        q = module.project_heads(module.w_q, x_q)
        k = module.project_heads(module.w_k, x_kv)
        v = module.project_heads(module.w_v, x_kv)
        heads, weights = kernel(q, k, v, combine_masks(padding, attn_mask))
        out: Tensor = module.w_o(merge_heads(heads))
        return out, weights

    return run


def matmul_kernel(q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None) -> tuple[Tensor, Tensor]:
    """The bug: reference weights, then ``weights @ v`` over every value row."""
    _, weights = scaled_dot_product_attention(q, k, v, keep)
    return weights @ v, weights


class MhaNanPaddingMatmulMutant(ReferenceAdapter):
    """Reference MHA whose weighted sum is a plain matmul."""

    name = "mutant.mha-nan-padding-matmul"
    capabilities = frozenset({Capability.MHA})

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """Reference MHA with ``matmul_kernel``."""
        return reference_mha_with(matmul_kernel, d_model, num_heads, state, device, dtype)


def make() -> MhaNanPaddingMatmulMutant:
    """Factory for ``--impl mutant.mha-nan-padding-matmul``."""
    return MhaNanPaddingMatmulMutant()
