"""Planted bug: the causal mask is dropped on one path (``is_causal=True`` is ignored).

An explicit causal mask still works, so tests that only pass masks explicitly would not notice.
Rejected by: mask.causal.future-blind (check ``mask.causal.is-causal``).
"""

from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mask.causal.is-causal",)


class IsCausalIgnoredMutant(ReferenceAdapter):
    """Reference attention that forgets ``is_causal``."""

    name = "mutant.is-causal-ignored"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``is_causal`` is not passed on."""
        return super().attention(q, k, v, mask=mask, is_causal=False)


def make() -> IsCausalIgnoredMutant:
    """Factory for ``--impl mutant.is-causal-ignored``."""
    return IsCausalIgnoredMutant()
