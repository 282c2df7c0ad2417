"""Planted bug: the ALiBi bias is added with the wrong sign, ``+slope_h * (i - j)``, so distant keys are
favoured instead of penalised (a sign slip when porting BLOOM's ``slope * j`` form to ``-slope * (i -
j)``).

Rejected by: alibi.distance-only, alibi.slopes (checks ``attention.alibi.differential``,
``attention.alibi.measured-slopes``).
"""

from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants._variants import DeclaredVariantAdapter
from transformer_conformance.reference.alibi import alibi_slopes
from transformer_conformance.reference.architecture import Architecture

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.alibi.differential", "attention.alibi.measured-slopes")


class AttentionAlibiSignFlippedMutant(DeclaredVariantAdapter):
    """Declares ALiBi, adds the bias with its sign flipped."""

    name = "mutant.attention-alibi-sign-flipped"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(positions="alibi")
    }

    def slopes(self, num_heads: int) -> Tensor:
        return -alibi_slopes(num_heads)


def make() -> AttentionAlibiSignFlippedMutant:
    """Factory for ``--impl mutant.attention-alibi-sign-flipped``."""
    return AttentionAlibiSignFlippedMutant()
