"""Planted bug: a sliding window of w lets each query see w + 1 keys (``i - j <= w``, the flex-attention
tutorial's form) while the target declares Mistral's convention ``i - w < j <= i`` (w keys).

Rejected by: window.blind-outside (check ``attention.window.differential``).
"""

from collections.abc import Mapping
from typing import ClassVar

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants._variants import DeclaredVariantAdapter
from transformer_conformance.reference.architecture import Architecture

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.window.differential",)

WINDOW = 3


class AttentionWindowOffByOneMutant(DeclaredVariantAdapter):
    """Declares a window of 3, applies 4."""

    name = "mutant.attention-window-off-by-one"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(sliding_window=WINDOW)
    }
    applied_window = WINDOW + 1


def make() -> AttentionWindowOffByOneMutant:
    """Factory for ``--impl mutant.attention-window-off-by-one``."""
    return AttentionWindowOffByOneMutant()
