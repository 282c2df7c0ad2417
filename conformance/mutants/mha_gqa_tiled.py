"""Planted bug: a grouped-query MHA declares the contiguous mapping (torch ``enable_gqa``, Hugging Face
``repeat_kv``: query head h reads KV head h // g) but expands its KV heads with ``k.repeat(1, g, 1, 1)``,
the tiled mapping (query head h reads KV head h mod num_kv_heads). A real porting bug; it is invisible
with one KV head or one query head per group.

Rejected by: mha.gqa-projections, mha.gqa-group-relabel (checks ``mha.gqa.differential`` and
``mha.gqa.group-relabel``).
"""

from transformer_conformance.mutants._grouped import GroupedMhaAdapter
from transformer_conformance.reference.grouped import KVMapping

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mha.gqa.differential", "mha.gqa.group-relabel")


class MhaGqaTiledMutant(GroupedMhaAdapter):
    """Declares contiguous KV groups, computes tiled ones."""

    name = "mutant.mha-gqa-tiled"

    def mapping(self) -> KVMapping:
        return "tiled"


def make() -> MhaGqaTiledMutant:
    """Factory for ``--impl mutant.mha-gqa-tiled``."""
    return MhaGqaTiledMutant()
