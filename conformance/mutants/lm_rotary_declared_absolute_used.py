"""Planted bug: the target declares rotary positions but its LM adds an absolute sinusoidal table to
the embeddings instead (a half-finished port), so left padding moves every real token's logits.

Rejected by: rotary.relative-dot-product (check ``lm.positions.relative-shift``).
"""

from dataclasses import replace
from typing import Any

from transformer_conformance.mutants._variants import DeclaredVariantAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.positions.relative-shift",)


class LmRotaryDeclaredAbsoluteUsedMutant(DeclaredVariantAdapter):
    """Declares rotary positions, builds absolute ones."""

    name = "mutant.lm-rotary-declared-absolute-used"

    def lm_config(self, config: Any) -> Any:
        return replace(config, arch=replace(config.arch, positions="absolute"))


def make() -> LmRotaryDeclaredAbsoluteUsedMutant:
    """Factory for ``--impl mutant.lm-rotary-declared-absolute-used``."""
    return LmRotaryDeclaredAbsoluteUsedMutant()
