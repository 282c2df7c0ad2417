"""Planted bug: a target whose rotary embedding rotates interleaved pairs declares the half-split
``rotate_half`` layout (the Hugging Face Llama default) -- the pairing mismatch behind many broken
checkpoint conversions. Every metamorphic check passes; only the differential one can tell.

Rejected by: lm.llama-equals-hf via the declared architecture (check ``lm.reference``).
"""

from dataclasses import replace
from typing import Any

from transformer_conformance.mutants._variants import DeclaredVariantAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.reference",)


class LmRopeLayoutDeclaredWrongMutant(DeclaredVariantAdapter):
    """Declares rope_layout='half', computes 'interleaved'."""

    name = "mutant.lm-rope-layout-declared-wrong"

    def lm_config(self, config: Any) -> Any:
        return replace(config, arch=replace(config.arch, rope_layout="interleaved"))


def make() -> LmRopeLayoutDeclaredWrongMutant:
    """Factory for ``--impl mutant.lm-rope-layout-declared-wrong``."""
    return LmRopeLayoutDeclaredWrongMutant()
