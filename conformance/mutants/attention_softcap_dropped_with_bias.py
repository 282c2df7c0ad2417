"""Planted bug: the target declares ALiBi with a logit soft-cap of 5, but its biased path (the kernel
variant taken whenever an additive bias is present) skips the ``cap * tanh(s / cap)`` step: with large
scores one key takes all the weight.

Rejected by: scoring.softcap-bounds-weights (checks ``attention.softcap.bounded``,
``attention.alibi.differential``).
"""

from collections.abc import Mapping
from dataclasses import replace
from typing import ClassVar

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants._variants import DeclaredVariantAdapter
from transformer_conformance.reference.architecture import Architecture

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.softcap.bounded", "attention.alibi.differential")


class AttentionSoftcapDroppedWithBiasMutant(DeclaredVariantAdapter):
    """Declares ALiBi and a soft-cap of 5, computes ALiBi without the cap."""

    name = "mutant.attention-softcap-dropped-with-bias"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(positions="alibi", attn_softcap=5.0)
    }

    def attention_arch(self) -> Architecture:
        return replace(self.architecture_for(Capability.ATTENTION), attn_softcap=None)


def make() -> AttentionSoftcapDroppedWithBiasMutant:
    """Factory for ``--impl mutant.attention-softcap-dropped-with-bias``."""
    return AttentionSoftcapDroppedWithBiasMutant()
