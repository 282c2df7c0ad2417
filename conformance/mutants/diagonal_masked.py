"""Planted bug: the causal mask also hides the diagonal (``key < query`` instead of ``key <= query``).

Query 0 then sees nothing and every query loses its own token.
Rejected by: mask.causal.diagonal-visible (check ``mask.causal.diagonal-visible``).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.masks import combine_masks
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mask.causal.diagonal-visible",)


class DiagonalMaskedMutant(ReferenceAdapter):
    """Reference attention with a strictly lower-triangular causal mask."""

    name = "mutant.diagonal-masked"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``key_pos < query_pos`` (bottom-right aligned)."""
        if is_causal:
            nq, nk = q.shape[-2], k.shape[-2]
            query_pos = torch.arange(nq, device=q.device).unsqueeze(-1) + (nk - nq)
            strict = torch.arange(nk, device=q.device).unsqueeze(0) < query_pos
            mask = combine_masks(mask, strict)
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        return out, weights


def make() -> DiagonalMaskedMutant:
    """Factory for ``--impl mutant.diagonal-masked``."""
    return DiagonalMaskedMutant()
