"""Planted bug: masking adds a finite bias of -1e4 instead of excluding the key (-inf / exact zero).

Fine for modest scores, but a masked key with a huge score (pad contents 1e10, or scores x1e3)
overcomes the bias and takes the attention.
Rejected by: mask.finite-negative (check ``mask.padding.invariance``).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.masks import causal_mask, combine_masks
from transformer_conformance.targets.reference import ReferenceAdapter

BIAS = -1e4


# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mask.padding.invariance",)


class FiniteMaskMutant(ReferenceAdapter):
    """Reference attention with the keep-mask turned into a finite additive bias."""

    name = "mutant.finite-mask"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``where(keep, 0, -1e4)`` as an additive float mask."""
        if is_causal:
            mask = combine_masks(mask, causal_mask(q.shape[-2], k.shape[-2], device=q.device))
        bias = None
        if mask is not None:
            zero = torch.zeros((), dtype=q.dtype, device=q.device)
            bias = torch.where(mask, zero, torch.full((), BIAS, dtype=q.dtype, device=q.device))
        out, weights = scaled_dot_product_attention(q, k, v, bias)
        return out, weights


def make() -> FiniteMaskMutant:
    """Factory for ``--impl mutant.finite-mask``."""
    return FiniteMaskMutant()
