"""Planted bug: a grouped-query MHA scales its scores by 1/sqrt of the width of its K projection
(``num_kv_heads * d_head``, read off ``k_proj.out_features`` before the split into heads) instead of
1/sqrt(d_head). With one KV head it is right; with two it is off by sqrt(2). Relabelling heads cannot
see it (every head is scaled alike), so only the differential check does.

Rejected by: mha.gqa-projections, attention.scale.sqrt-dk (check ``mha.gqa.differential``).
"""

import math

from transformer_conformance.mutants._grouped import GroupedMhaAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mha.gqa.differential",)


class MhaGqaScaleKvWidthMutant(GroupedMhaAdapter):
    """Scale 1/sqrt(num_kv_heads * d_head)."""

    name = "mutant.mha-gqa-scale-kv-width"

    def scale(self, d_head: int, num_kv_heads: int) -> float | None:
        return 1.0 / math.sqrt(num_kv_heads * d_head)


def make() -> MhaGqaScaleKvWidthMutant:
    """Factory for ``--impl mutant.mha-gqa-scale-kv-width``."""
    return MhaGqaScaleKvWidthMutant()
