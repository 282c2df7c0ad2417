"""Planted bug: the attention mask is read with the wrong polarity (True taken as "masked").

The target declares the project polarity (True = may attend) but inverts the mask before use, so it
attends exactly where it should not.
Rejected by: mask.neg-inf-exact-zero (check ``mask.masked-weights-zero``).
"""

from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mask.masked-weights-zero",)


class MaskPolarityInvertedMutant(ReferenceAdapter):
    """Reference attention fed the inverted mask."""

    name = "mutant.mask-polarity-inverted"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``~mask``."""
        return super().attention(q, k, v, mask=None if mask is None else ~mask, is_causal=is_causal)


def make() -> MaskPolarityInvertedMutant:
    """Factory for ``--impl mutant.mask-polarity-inverted``."""
    return MaskPolarityInvertedMutant()
