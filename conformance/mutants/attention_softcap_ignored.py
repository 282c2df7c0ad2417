"""Planted bug: the target declares logit soft-capping (``attn_softcap = 5``, as Gemma 2 does) but its
kernel skips the ``cap * tanh(s / cap)`` step, which only shows once scores grow past the cap.

Rejected by: scoring.softcap (check ``attention.scoring.declared``).
"""

from collections.abc import Mapping
from dataclasses import replace
from typing import ClassVar

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants._variants import DeclaredVariantAdapter
from transformer_conformance.reference.architecture import Architecture

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.scoring.declared",)


class AttentionSoftcapIgnoredMutant(DeclaredVariantAdapter):
    """Declares a soft-cap of 5, computes without one."""

    name = "mutant.attention-softcap-ignored"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(attn_softcap=5.0)
    }

    def attention_arch(self) -> Architecture:
        return replace(self.architecture_for(Capability.ATTENTION), attn_softcap=None)


def make() -> AttentionSoftcapIgnoredMutant:
    """Factory for ``--impl mutant.attention-softcap-ignored``."""
    return AttentionSoftcapIgnoredMutant()
