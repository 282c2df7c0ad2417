"""Planted bug: batch and heads are flattened to ``[b * h, ...]`` sample-major, but the padding mask is
tiled with ``mask.repeat(h, 1, 1)`` (block-major) instead of ``mask.repeat_interleave(h, dim=0)``.

Head ``j`` of sample ``i`` then gets the mask of sample ``(i * h + j) % b``: another sample's padding.
Alone (b = 1) a sample is right; in a batch its output depends on its neighbours' lengths.
Rejected by: batch.independence (check ``encoder_layer.batch-independence``).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.cache import LayerKVCache
from transformer_conformance.reference.encoder import EncoderLayer
from transformer_conformance.reference.multihead import MultiHeadAttention, merge_heads
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encoder_layer.batch-independence",)


class RepeatMaskMHA(MultiHeadAttention):
    """Multi-head attention on a flattened ``[b * h]`` batch with the mask tiled the wrong way."""

    def forward(  # type: ignore[override]
        self, x_q: Tensor, x_kv: Tensor, mask: Tensor | None = None, cache: LayerKVCache | None = None
    ) -> tuple[Tensor, None]:
        """Flatten heads into the batch (sample-major), attend with ``mask.repeat(h, 1, 1)`` (the bug)."""
        q = self.project_heads(self.w_q, x_q)
        k = self.project_heads(self.w_k, x_kv)
        v = self.project_heads(self.w_v, x_kv)
        if cache is not None:
            k, v = cache.append(k, v)
        b, h = q.shape[0], self.num_heads
        flat_mask = mask
        if mask is not None and mask.dim() == 4 and mask.shape[0] == b:
            flat_mask = mask[:, 0].repeat(h, 1, 1)  # the bug: should be repeat_interleave(h, dim=0)
        elif mask is not None and mask.dim() == 4:
            flat_mask = mask[0, 0]
        heads, _ = scaled_dot_product_attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), flat_mask)
        out: Tensor = self.w_o(merge_heads(heads.reshape(b, h, *heads.shape[1:])))
        return out, None


class RepeatMaskEncoderLayer(EncoderLayer):
    """EncoderLayer whose self-attention is ``RepeatMaskMHA`` (same parameter names)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.self_attn = RepeatMaskMHA(config.d_model, config.num_heads)


class EncoderLayerHeadMaskRepeatMutant(ReferenceAdapter):
    """The reference encoder layer with the [b * h] mask tiling bug."""

    name = "mutant.encoder-layer-head-mask-repeat"
    capabilities = frozenset({Capability.ENCODER_LAYER})

    def build_encoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """``RepeatMaskEncoderLayer`` with the given weights."""
        module: Callable[..., Tensor] = _build(lambda: RepeatMaskEncoderLayer(config), state, device, dtype)
        return module


def make() -> EncoderLayerHeadMaskRepeatMutant:
    """Factory for ``--impl mutant.encoder-layer-head-mask-repeat``."""
    return EncoderLayerHeadMaskRepeatMutant()
