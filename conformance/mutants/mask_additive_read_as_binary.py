"""Planted bug: the additive-mask entry point treats its float mask as a 1/0 keep-mask
(``masked_fill(mask == 0, -inf)``, the Hugging Face idiom), but the mask it receives is the additive
form, 0 = attend and -inf = masked. The polarity is inverted: visible keys are hidden and masked ones
seen.

The boolean path is right.
Rejected by: mask.causal.additive-form (check ``mask.causal.additive``),
mask.boolean-equals-additive (check ``mask.boolean-equals-additive``).
"""

from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mask.causal.additive", "mask.boolean-equals-additive")


class MaskAdditiveReadAsBinaryMutant(ReferenceAdapter):
    """Reference attention; the additive mask is read as 1 = attend, 0 = masked."""

    name = "mutant.mask-additive-read-as-binary"
    capabilities = frozenset({Capability.ATTENTION})

    def attention_additive(self, q: Tensor, k: Tensor, v: Tensor, *, bias: Tensor) -> tuple[Tensor, Tensor]:
        """The bug: keep where ``bias != 0``."""
        out, weights = scaled_dot_product_attention(q, k, v, bias != 0)
        return out, weights


def make() -> MaskAdditiveReadAsBinaryMutant:
    """Factory for ``--impl mutant.mask-additive-read-as-binary``."""
    return MaskAdditiveReadAsBinaryMutant()
