"""Planted bug: the encoder layer accepts a padding mask but never hands it to self-attention.

Real tokens then attend to the padding rows, so what sits in the padding changes their outputs.
Rejected by: mask.padding.invariance, mask.padding.pad-value-arbitrary
(check ``encoder_layer.padding-invariance``).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.encoder import EncoderLayer
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encoder_layer.padding-invariance",)


class PaddingIgnoredEncoderLayer(EncoderLayer):
    """EncoderLayer that drops its ``pad_mask``."""

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """The bug: the mask is accepted and silently ignored."""
        out: Tensor = super().forward(x, None)
        return out


class EncoderLayerPaddingIgnoredMutant(ReferenceAdapter):
    """The reference encoder layer without key padding."""

    name = "mutant.encoder-layer-padding-ignored"
    capabilities = frozenset({Capability.ENCODER_LAYER})

    def build_encoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """``PaddingIgnoredEncoderLayer`` with the given weights."""
        module: Callable[..., Tensor] = _build(
            lambda: PaddingIgnoredEncoderLayer(config), state, device, dtype
        )
        return module


def make() -> EncoderLayerPaddingIgnoredMutant:
    """Factory for ``--impl mutant.encoder-layer-padding-ignored``."""
    return EncoderLayerPaddingIgnoredMutant()
