"""Planted bug: the causal mask also hides the diagonal (``key < query`` instead of ``key <= query``).

Query 0 then sees nothing and every query loses its own token.
Rejected by: mask.causal.diagonal-visible (check ``mask.causal.diagonal-visible``).
"""

from transformer_conformance.mutants._causal_shift import ShiftedCausalMutant

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mask.causal.diagonal-visible",)


class DiagonalMaskedMutant(ShiftedCausalMutant):
    """Reference attention with a strictly lower-triangular causal mask (``key <= query - 1``)."""

    name = "mutant.diagonal-masked"
    SHIFT = -1


def make() -> DiagonalMaskedMutant:
    """Factory for ``--impl mutant.diagonal-masked``."""
    return DiagonalMaskedMutant()
