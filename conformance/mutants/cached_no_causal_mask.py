"""Planted bug: the cached decoding path drops the causal mask.

Written for single-token steps (where the mask is indeed a no-op: the one new query may see every
cached key), the cached path applies only the padding mask; a prompt prefill or a chunk of several
tokens then lets earlier tokens of the chunk see later ones.
Rejected by: kvcache.chunked-prefill (check ``lm.chunked-prefill``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.cache import LayerKVCache
from transformer_conformance.reference.decoder import DecoderOnlyLayer
from transformer_conformance.reference.masks import key_padding_to_attention_mask
from transformer_conformance.reference.model import DecoderOnlyLM
from transformer_conformance.targets.reference import LMHandle, ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.chunked-prefill", "lm.cache-with-padding")


class NoCausalCachedLayer(DecoderOnlyLayer):
    """A decoder-only layer that masks only padding when it runs on a cache."""

    def causal_self_attention(self, h: Tensor, key_pad: Tensor | None, cache: LayerKVCache | None) -> Tensor:
        """Without a cache: correct. With a cache: no causal mask (the bug)."""
        if cache is None:
            return super().causal_self_attention(h, key_pad, cache)
        mask = None if key_pad is None else key_padding_to_attention_mask(key_pad)
        out: Tensor = self.self_attn(h, h, mask, cache)[0]
        return out


def _model(config: Any) -> DecoderOnlyLM:
    model = DecoderOnlyLM(config)
    for layer in model.decoder.layers:
        layer.__class__ = NoCausalCachedLayer
    return model


class CachedNoCausalMaskMutant(ReferenceAdapter):
    """The reference LM whose cached path has no causal mask."""

    name = "mutant.cached-no-causal-mask"
    capabilities = frozenset({Capability.DECODER_LM})

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """LMHandle over the reference LM with ``NoCausalCachedLayer`` layers."""
        return LMHandle(_build(lambda: _model(config), state, device, dtype))


def make() -> CachedNoCausalMaskMutant:
    """Factory for ``--impl mutant.cached-no-causal-mask``."""
    return CachedNoCausalMaskMutant()
