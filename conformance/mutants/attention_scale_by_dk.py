"""Planted bug: scores are divided by d_k instead of sqrt(d_k).

Shapes, masks, row sums and the convex hull are all still right; only the values differ (the
softmax is sqrt(d_k) times too flat), and not at all for d_k = 1. The bug sits in the one kernel, so
the additive-mask entry point has it too (``tests/conformance/test_blame.py``: only the formula's
claims fail, the checks that need the oracle are blocked).
Rejected by: attention.scale.sqrt-dk (check ``attention.differential``).
"""

from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.masks import causal_mask, combine_masks
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.differential",)


class AttentionScaleByDkMutant(ReferenceAdapter):
    """Reference attention with ``scale = 1 / d_k``."""

    name = "mutant.attention-scale-by-dk"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``scale=1 / d_k``."""
        if is_causal:
            mask = combine_masks(mask, causal_mask(q.shape[-2], k.shape[-2], device=q.device))
        out, weights = scaled_dot_product_attention(q, k, v, mask, scale=1.0 / q.shape[-1])
        return out, weights

    def attention_additive(self, q: Tensor, k: Tensor, v: Tensor, *, bias: Tensor) -> tuple[Tensor, Tensor]:
        """The same bug behind the additive-mask entry point."""
        out, weights = scaled_dot_product_attention(q, k, v, bias, scale=1.0 / q.shape[-1])
        return out, weights


def make() -> AttentionScaleByDkMutant:
    """Factory for ``--impl mutant.attention-scale-by-dk``."""
    return AttentionScaleByDkMutant()
