"""Planted bug: the target declares ALiBi with a logit soft-cap of 5 and caps the biased scores,
``cap * tanh((s + B) / cap)``, instead of capping the scores before the bias is added (Gemma 2 and the
flash-attention kernels cap ``s`` alone): the bias of distant keys is squashed with the scores.

Rejected by: scoring.softcap (check ``attention.alibi.differential``).
"""

from collections.abc import Mapping
from typing import ClassVar

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants._variants import DeclaredVariantAdapter
from transformer_conformance.reference.architecture import Architecture

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.alibi.differential",)


class AttentionSoftcapAfterBiasMutant(DeclaredVariantAdapter):
    """Declares ALiBi and a soft-cap of 5 (cap, then bias); caps the biased scores."""

    name = "mutant.attention-softcap-after-bias"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(positions="alibi", attn_softcap=5.0)
    }
    softcap_after_bias = True


def make() -> AttentionSoftcapAfterBiasMutant:
    """Factory for ``--impl mutant.attention-softcap-after-bias``."""
    return AttentionSoftcapAfterBiasMutant()
