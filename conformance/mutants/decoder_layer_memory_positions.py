"""Planted bug: the decoder layer adds the sinusoidal position table to the encoder memory before
cross-attention ("the keys need positions too"), re-encoding positions the encoder already mixed in.

Cross-attention then sees *where* each memory vector sits: permuting the memory (with its padding)
changes the output, and the memory is no longer an unordered set of keys.
Rejected by: attention.cross.memory-permutation-invariant (check ``decoder_layer.memory-permutation``).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants.decoder_layer_cross_sources_swapped import build
from transformer_conformance.reference.cache import KVCache
from transformer_conformance.reference.decoder import DecoderLayer
from transformer_conformance.reference.positional import sinusoidal_encoding
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("decoder_layer.memory-permutation",)


class MemoryPositionsDecoderLayer(DecoderLayer):
    """DecoderLayer that gives the memory a positional encoding inside cross-attention."""

    def cross_attention(
        self, h: Tensor, memory: Tensor, mem_pad: Tensor | None, cache: KVCache | None, layer_index: int
    ) -> Tensor:
        """The bug: ``memory + PE[:s]`` as keys and values."""
        table = sinusoidal_encoding(
            memory.shape[1], memory.shape[2], dtype=memory.dtype, device=memory.device
        )
        return super().cross_attention(h, memory + table, mem_pad, cache, layer_index)


class DecoderLayerMemoryPositionsMutant(ReferenceAdapter):
    """The reference decoder layer with positions added to the memory."""

    name = "mutant.decoder-layer-memory-positions"
    capabilities = frozenset({Capability.DECODER_LAYER})

    def build_decoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """``MemoryPositionsDecoderLayer`` with the given weights."""
        return build(lambda: MemoryPositionsDecoderLayer(config), state, device, dtype)


def make() -> DecoderLayerMemoryPositionsMutant:
    """Factory for ``--impl mutant.decoder-layer-memory-positions``."""
    return DecoderLayerMemoryPositionsMutant()
