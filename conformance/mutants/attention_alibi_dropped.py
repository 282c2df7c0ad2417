"""Planted bug: a target declares ALiBi but adds no bias (all slopes 0: a bias wired to a module that
was never built), so its attention is as blind to token order as attention without positions.

Rejected by: alibi.breaks-permutation-equivariance, alibi.distance-only, alibi.slopes (checks
``attention.alibi.order-aware``, ``attention.alibi.differential``, ``attention.alibi.measured-slopes``).
"""

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants._variants import DeclaredVariantAdapter
from transformer_conformance.reference.architecture import Architecture

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = (
    "attention.alibi.order-aware",
    "attention.alibi.differential",
    "attention.alibi.measured-slopes",
)


class AttentionAlibiDroppedMutant(DeclaredVariantAdapter):
    """Declares ALiBi, adds a zero bias."""

    name = "mutant.attention-alibi-dropped"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(positions="alibi")
    }

    def slopes(self, num_heads: int) -> Tensor:
        return torch.zeros(num_heads, dtype=torch.float64)


def make() -> AttentionAlibiDroppedMutant:
    """Factory for ``--impl mutant.attention-alibi-dropped``."""
    return AttentionAlibiDroppedMutant()
