"""Planted bug: grouped-query attention reads its KV heads tiled (query head h -> KV head h mod kv)
while the target declares the contiguous mapping of torch's enable_gqa and Hugging Face's repeat_kv
(query head h -> KV head h // g). A real bug class when porting ``repeat_kv`` as ``k.repeat(...)``.

Rejected by: gqa.repeat-equivalence (checks ``attention.gqa.differential`` and
``attention.gqa.repeat-equivalence``).
"""

from dataclasses import replace

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants._variants import DeclaredVariantAdapter
from transformer_conformance.reference.architecture import Architecture

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.gqa.differential", "attention.gqa.repeat-equivalence")


class AttentionGqaTiledMutant(DeclaredVariantAdapter):
    """Declares contiguous KV groups, computes tiled ones."""

    name = "mutant.attention-gqa-tiled"

    def attention_arch(self) -> Architecture:
        return replace(self.architecture_for(Capability.ATTENTION), kv_mapping="tiled")


def make() -> AttentionGqaTiledMutant:
    """Factory for ``--impl mutant.attention-gqa-tiled``."""
    return AttentionGqaTiledMutant()
