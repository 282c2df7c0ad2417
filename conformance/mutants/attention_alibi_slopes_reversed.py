"""Planted bug: the ALiBi slopes are assigned to the heads in reverse order (head 0 gets the smallest
slope), as when a port builds the slope list with ``range(n, 0, -1)`` or reverses it for a fused layout.
Every head still has a valid geometric slope, only the wrong one.

Rejected by: alibi.measured-slopes, alibi.slopes (checks ``attention.alibi.measured-slopes``,
``attention.alibi.differential``).
"""

from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants._variants import DeclaredVariantAdapter
from transformer_conformance.reference.alibi import alibi_slopes
from transformer_conformance.reference.architecture import Architecture

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.alibi.measured-slopes", "attention.alibi.differential")


class AttentionAlibiSlopesReversedMutant(DeclaredVariantAdapter):
    """Declares ALiBi, applies the standard slopes in reverse head order."""

    name = "mutant.attention-alibi-slopes-reversed"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(positions="alibi")
    }

    def slopes(self, num_heads: int) -> Tensor:
        return alibi_slopes(num_heads).flip(0)


def make() -> AttentionAlibiSlopesReversedMutant:
    """Factory for ``--impl mutant.attention-alibi-slopes-reversed``."""
    return AttentionAlibiSlopesReversedMutant()
