"""Planted bug: the layer's attention is the textbook ``softmax(masked_fill(scores, -inf)) @ V``.

Two real-world consequences, both from that one line: a sample with no real token gets NaN (softmax of
a row of ``-inf`` is 0/0) although the target declares ``fully_masked_row = "zero"``, and NaN in a
padding row of V leaks into every real position through ``0 * NaN = NaN`` (finite padding, however
large, still vanishes because the masked weights are exactly 0).
Rejected by: mask.padding.invariance (check ``encoder_layer.padding-nan``) and
attention.fully-masked-row (check ``encoder_layer.fully-padded-sample``).
"""

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.cache import LayerKVCache
from transformer_conformance.reference.encoder import EncoderLayer
from transformer_conformance.reference.multihead import MultiHeadAttention, merge_heads
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encoder_layer.padding-nan", "encoder_layer.fully-padded-sample")


def textbook_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """softmax(q k^T / sqrt(d) with hidden scores set to -inf) @ v: no fully-masked or NaN-value care."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


class TextbookMHA(MultiHeadAttention):
    """Reference multi-head attention whose per-head attention is ``textbook_attention``."""

    def forward(  # type: ignore[override]
        self, x_q: Tensor, x_kv: Tensor, mask: Tensor | None = None, cache: LayerKVCache | None = None
    ) -> tuple[Tensor, None]:
        """Project, attend (the bug), merge, project; no weights come back."""
        q = self.project_heads(self.w_q, x_q)
        k = self.project_heads(self.w_k, x_kv)
        v = self.project_heads(self.w_v, x_kv)
        if cache is not None:
            k, v = cache.append(k, v)
        out: Tensor = self.w_o(merge_heads(textbook_attention(q, k, v, mask)))
        return out, None


class TextbookEncoderLayer(EncoderLayer):
    """EncoderLayer whose self-attention is ``TextbookMHA`` (same parameter names)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.self_attn = TextbookMHA(config.d_model, config.num_heads)


class EncoderLayerTextbookAttentionMutant(ReferenceAdapter):
    """The reference encoder layer with textbook masked attention."""

    name = "mutant.encoder-layer-textbook-attention"
    capabilities = frozenset({Capability.ENCODER_LAYER})

    def build_encoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """``TextbookEncoderLayer`` with the given weights."""
        module: Callable[..., Tensor] = _build(lambda: TextbookEncoderLayer(config), state, device, dtype)
        return module


def make() -> EncoderLayerTextbookAttentionMutant:
    """Factory for ``--impl mutant.encoder-layer-textbook-attention``."""
    return EncoderLayerTextbookAttentionMutant()
