"""Planted bug: the T5 relative buckets are taken of ``i - j`` instead of ``j - i`` (memory position
minus context position swapped), so with bidirectional buckets keys before the query land in the
buckets of keys after it. The bias is still relative and additive, only mirrored.

Rejected by: relbias.buckets (check ``attention.relbias.differential``).
"""

from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants._variants import DeclaredVariantAdapter
from transformer_conformance.reference.architecture import Architecture

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.relbias.differential",)


class AttentionRelbiasDirectionSwappedMutant(DeclaredVariantAdapter):
    """Declares bidirectional T5 buckets, buckets the negated distance."""

    name = "mutant.attention-relbias-direction-swapped"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(positions="relative", relative_buckets=8, relative_max_distance=16)
    }

    def relative_positions(self, query_positions: Tensor, key_positions: Tensor) -> Tensor:
        return query_positions[:, None] - key_positions[None, :]


def make() -> AttentionRelbiasDirectionSwappedMutant:
    """Factory for ``--impl mutant.attention-relbias-direction-swapped``."""
    return AttentionRelbiasDirectionSwappedMutant()
