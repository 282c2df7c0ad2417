"""Planted bug: cross-attention is called with its arguments swapped: queries from the encoder memory,
keys and values from the decoder stream (``cross_attn(memory, x)`` instead of ``cross_attn(x, memory)``).

The cross-attention result then has one row per *source* position, so the layer only works when
target and source happen to have the same length (here it fails as soon as they differ).
Rejected by: encdec.output-length-independent (check ``decoder_layer.shape``).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.cache import KVCache
from transformer_conformance.reference.decoder import DecoderLayer
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("decoder_layer.shape",)


class SwappedCrossDecoderLayer(DecoderLayer):
    """DecoderLayer whose cross-attention takes its queries from the memory."""

    def cross_attention(
        self, h: Tensor, memory: Tensor, mem_pad: Tensor | None, cache: KVCache | None, layer_index: int
    ) -> Tensor:
        """The bug: ``cross_attn(memory, h)`` (the memory mask no longer fits these keys and is dropped)."""
        del mem_pad, cache, layer_index
        out: Tensor = self.cross_attn(memory, h, None)[0]
        return out


def build(
    factory: Callable[[], DecoderLayer],
    state: dict[str, Tensor] | None,
    device: torch.device,
    dtype: torch.dtype,
) -> Callable[..., Tensor]:
    """(x, memory, tgt_pad, mem_pad) -> y over a built, loaded, eval-mode ``factory()`` layer."""
    module = _build(factory, state, device, dtype)

    def run(
        x: Tensor, memory: Tensor, tgt_pad: Tensor | None = None, mem_pad: Tensor | None = None
    ) -> Tensor:
        out: Tensor = module(x, memory, tgt_pad, mem_pad)
        return out

    return run


class DecoderLayerCrossSourcesSwappedMutant(ReferenceAdapter):
    """The reference decoder layer with swapped cross-attention sources."""

    name = "mutant.decoder-layer-cross-sources-swapped"
    capabilities = frozenset({Capability.DECODER_LAYER})

    def build_decoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """``SwappedCrossDecoderLayer`` with the given weights."""
        return build(lambda: SwappedCrossDecoderLayer(config), state, device, dtype)


def make() -> DecoderLayerCrossSourcesSwappedMutant:
    """Factory for ``--impl mutant.decoder-layer-cross-sources-swapped``."""
    return DecoderLayerCrossSourcesSwappedMutant()
