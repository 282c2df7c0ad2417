"""Planted bug: a chunk of several tokens on a warm cache attends only to itself.

Single-token steps use the cache correctly, but the multi-token (prefill) path forgets to read the
cached prefix: the chunk's queries see the chunk's own keys only (its K/V are still appended, so
later steps look fine). Rejected by: kvcache.chunked-prefill (check ``lm.chunked-prefill``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.cache import LayerKVCache
from transformer_conformance.reference.decoder import DecoderOnlyLayer, self_attention_mask
from transformer_conformance.reference.model import DecoderOnlyLM
from transformer_conformance.targets.reference import LMHandle, ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.chunked-prefill",)


class NoPrefixLayer(DecoderOnlyLayer):
    """A decoder-only layer whose multi-token cached path ignores the cached prefix."""

    def causal_self_attention(self, h: Tensor, key_pad: Tensor | None, cache: LayerKVCache | None) -> Tensor:
        """Correct except for chunks > 1 on a warm cache, which attend within the chunk only (the bug)."""
        if cache is None or h.shape[1] == 1 or cache.length == 0:
            return super().causal_self_attention(h, key_pad, cache)
        mha = self.self_attn
        out: Tensor = mha(h, h, self_attention_mask(h.shape[1], 0, None, h.device))[0]
        cache.append(mha.project_heads(mha.w_k, h), mha.project_heads(mha.w_v, h))
        return out


def _model(config: Any) -> DecoderOnlyLM:
    model = DecoderOnlyLM(config)
    for layer in model.decoder.layers:
        layer.__class__ = NoPrefixLayer
    return model


class ChunkedPrefillNoPrefixMutant(ReferenceAdapter):
    """The reference LM whose chunked prefill ignores the warm cache."""

    name = "mutant.chunked-prefill-no-prefix"
    capabilities = frozenset({Capability.DECODER_LM})

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """LMHandle over the reference LM with ``NoPrefixLayer`` layers."""
        return LMHandle(_build(lambda: _model(config), state, device, dtype))


def make() -> ChunkedPrefillNoPrefixMutant:
    """Factory for ``--impl mutant.chunked-prefill-no-prefix``."""
    return ChunkedPrefillNoPrefixMutant()
