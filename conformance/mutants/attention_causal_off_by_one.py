"""Planted bug: ``is_causal`` lets each query see one key too many (``key <= query + 1``).

A classic off-by-one of a hand-written causal mask (``triu(diagonal=2)`` for ``diagonal=1``): the query
at position p also sees the key at p + 1. The smallest case that shows it is two positions
(b=1 h=1 nq=2 nk=2): query 0 moves when key 1 changes. ``tests/conformance/test_search.py`` uses it
to show shrinking at work.
Rejected by: mask.causal.future-blind (check ``mask.causal.is-causal``).
"""

from transformer_conformance.mutants._causal_shift import ShiftedCausalMutant

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mask.causal.is-causal",)


class AttentionCausalOffByOneMutant(ShiftedCausalMutant):
    """Reference attention whose causal mask is shifted by one key (bottom-right aligned)."""

    name = "mutant.attention-causal-off-by-one"
    SHIFT = 1


def make() -> AttentionCausalOffByOneMutant:
    """Factory for ``--impl mutant.attention-causal-off-by-one``."""
    return AttentionCausalOffByOneMutant()
