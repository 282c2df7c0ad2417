"""Planted bug: the FFN activation is hard-coded to GELU (a BERT/GPT habit) while the config asks for ReLU.

Shapes, masking and residual wiring are all right; only the numbers differ from the specified layer.
Rejected by: encoder.output-per-position (check ``encoder_layer.reference``).
"""

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.encoder import EncoderLayer
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encoder_layer.reference",)


class EncoderLayerGeluMutant(ReferenceAdapter):
    """The reference encoder layer built with ``activation="gelu"`` whatever the config says."""

    name = "mutant.encoder-layer-gelu"
    capabilities = frozenset({Capability.ENCODER_LAYER})

    def build_encoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """EncoderLayer of the config with its activation overridden (the bug)."""
        module: Callable[..., Tensor] = _build(
            lambda: EncoderLayer(replace(config, activation="gelu")), state, device, dtype
        )
        return module


def make() -> EncoderLayerGeluMutant:
    """Factory for ``--impl mutant.encoder-layer-gelu``."""
    return EncoderLayerGeluMutant()
