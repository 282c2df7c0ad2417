"""Planted bug: the cached cross-attention forgets the source padding mask.

The uncached ``decode`` masks the memory's pad positions, but the incremental path (cross-attention
K/V projected once and reused) attends over every memory row, so cached decoding of a padded source
no longer matches recomputing the prefix.
Rejected by: kvcache.equals-recompute (check ``encdec.cache-equals-recompute``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.cache import KVCache
from transformer_conformance.reference.decoder import DecoderLayer
from transformer_conformance.reference.model import EncoderDecoder
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encdec.cache-equals-recompute",)


class CachedCrossUnmaskedLayer(DecoderLayer):
    """A decoder layer whose cached cross-attention drops ``mem_pad`` (the bug)."""

    def cross_attention(
        self, h: Tensor, memory: Tensor, mem_pad: Tensor | None, cache: KVCache | None, layer_index: int
    ) -> Tensor:
        """Correct without a cache; with one, every memory position is visible."""
        return super().cross_attention(h, memory, mem_pad if cache is None else None, cache, layer_index)


def _model(config: Any) -> EncoderDecoder:
    model = EncoderDecoder(config)
    for layer in model.decoder.layers:
        layer.__class__ = CachedCrossUnmaskedLayer
    return model


class EncdecCachedCrossUnmaskedMutant(ReferenceAdapter):
    """The reference encoder-decoder whose cached cross-attention ignores source padding."""

    name = "mutant.encdec-cached-cross-unmasked"
    capabilities = frozenset({Capability.ENCODER_DECODER})

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """The reference encoder-decoder with ``CachedCrossUnmaskedLayer`` layers."""
        return _build(lambda: _model(config), state, device, dtype)


def make() -> EncdecCachedCrossUnmaskedMutant:
    """Factory for ``--impl mutant.encdec-cached-cross-unmasked``."""
    return EncdecCachedCrossUnmaskedMutant()
