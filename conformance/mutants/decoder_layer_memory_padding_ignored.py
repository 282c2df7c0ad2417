"""Planted bug: the decoder layer never passes the memory padding mask to cross-attention (the classic
forgotten ``memory_key_padding_mask``).

Target tokens then attend to the encoder's padding rows, so what sits there changes their outputs.
Rejected by: mask.padding.invariance, mask.padding.pad-value-arbitrary
(check ``decoder_layer.padding-invariance``).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants.decoder_layer_cross_sources_swapped import build
from transformer_conformance.reference.cache import KVCache
from transformer_conformance.reference.decoder import DecoderLayer
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("decoder_layer.padding-invariance",)


class MemoryPaddingIgnoredDecoderLayer(DecoderLayer):
    """DecoderLayer whose cross-attention drops ``mem_pad``."""

    def cross_attention(
        self, h: Tensor, memory: Tensor, mem_pad: Tensor | None, cache: KVCache | None, layer_index: int
    ) -> Tensor:
        """The bug: cross-attention over every memory position, padding included."""
        return super().cross_attention(h, memory, None, cache, layer_index)


class DecoderLayerMemoryPaddingIgnoredMutant(ReferenceAdapter):
    """The reference decoder layer without memory key padding."""

    name = "mutant.decoder-layer-memory-padding-ignored"
    capabilities = frozenset({Capability.DECODER_LAYER})

    def build_decoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """``MemoryPaddingIgnoredDecoderLayer`` with the given weights."""
        return build(lambda: MemoryPaddingIgnoredDecoderLayer(config), state, device, dtype)


def make() -> DecoderLayerMemoryPaddingIgnoredMutant:
    """Factory for ``--impl mutant.decoder-layer-memory-padding-ignored``."""
    return DecoderLayerMemoryPaddingIgnoredMutant()
