"""Planted bug: a NaN workaround that drops the whole batch's padding mask as soon as one sample has no
real token ("a row of -inf gives NaN, so skip masking for this batch").

The empty sample stops being NaN, but every other sample of that batch now attends to its own padding,
so a normal sample's output depends on whether an empty sample sits beside it.
Rejected by: batch.independence (check ``encoder_layer.fully-padded-neighbour``).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.encoder import EncoderLayer
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encoder_layer.fully-padded-neighbour",)


class EmptySampleUnmaskedEncoderLayer(EncoderLayer):
    """EncoderLayer that ignores the padding mask of a batch holding a fully padded sample."""

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """The bug: one empty sample switches padding off for the whole batch."""
        if pad_mask is not None and not bool(pad_mask.any(dim=-1).all()):
            pad_mask = None
        out: Tensor = super().forward(x, pad_mask)
        return out


class EncoderLayerEmptySampleUnmaskedMutant(ReferenceAdapter):
    """The reference encoder layer with the batch-wide NaN workaround."""

    name = "mutant.encoder-layer-empty-sample-unmasked"
    capabilities = frozenset({Capability.ENCODER_LAYER})

    def build_encoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """``EmptySampleUnmaskedEncoderLayer`` with the given weights."""
        module: Callable[..., Tensor] = _build(
            lambda: EmptySampleUnmaskedEncoderLayer(config), state, device, dtype
        )
        return module


def make() -> EncoderLayerEmptySampleUnmaskedMutant:
    """Factory for ``--impl mutant.encoder-layer-empty-sample-unmasked``."""
    return EncoderLayerEmptySampleUnmaskedMutant()
