"""Planted bug: the decoder's cached path drops the causal mask of its self-attention.

Written for single-token steps (where the mask is a no-op: the one new query may see every cached
key), the cached path masks padding only; a chunk of several target tokens then lets its earlier
tokens see later ones. Rejected by: kvcache.chunked-prefill (check ``encdec.chunked-prefill``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.cache import LayerKVCache
from transformer_conformance.reference.decoder import DecoderLayer
from transformer_conformance.reference.masks import key_padding_to_attention_mask
from transformer_conformance.reference.model import EncoderDecoder
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encdec.chunked-prefill",)


class NoCausalCachedLayer(DecoderLayer):
    """A decoder layer that masks only padding when it runs on a cache."""

    def causal_self_attention(self, h: Tensor, key_pad: Tensor | None, cache: LayerKVCache | None) -> Tensor:
        """Without a cache: correct. With a cache: no causal mask (the bug)."""
        if cache is None:
            return super().causal_self_attention(h, key_pad, cache)
        mask = None if key_pad is None else key_padding_to_attention_mask(key_pad)
        out: Tensor = self.self_attn(h, h, mask, cache)[0]
        return out


def _model(config: Any) -> EncoderDecoder:
    model = EncoderDecoder(config)
    for layer in model.decoder.layers:
        layer.__class__ = NoCausalCachedLayer
    return model


class EncdecCachedNoCausalMaskMutant(ReferenceAdapter):
    """The reference encoder-decoder whose cached path has no causal mask."""

    name = "mutant.encdec-cached-no-causal-mask"
    capabilities = frozenset({Capability.ENCODER_DECODER})

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """The reference encoder-decoder with ``NoCausalCachedLayer`` layers."""
        return _build(lambda: _model(config), state, device, dtype)


def make() -> EncdecCachedNoCausalMaskMutant:
    """Factory for ``--impl mutant.encdec-cached-no-causal-mask``."""
    return EncdecCachedNoCausalMaskMutant()
