"""Decoders: the encoder-decoder's decoder (self-attention, cross-attention, FFN) and the decoder-only stack.

Self-attention is causal: query ``i`` sees keys ``<= i``. With a ``KVCache`` the queries are the newest
``t`` positions after ``past`` cached ones, and the causal mask is aligned bottom-right (query ``i`` at
absolute position ``past + i``), which is what makes a chunk of several tokens on a warm cache agree
with token-by-token decoding. Cross-attention has no causal mask: queries come from the decoder stream,
keys and values from the encoder memory (the encoder's last layer output). With a cache, each layer
projects the memory to K/V once and keeps the pair in ``cache.cross_attn[layer_index]``.

Parameter names (canonical layout): ``DecoderLayer``: ``self_attn, norm_1, cross_attn, norm_2, ffn,
norm_3``; ``DecoderOnlyLayer``: ``self_attn, norm_1, ffn, norm_2``; stacks: ``layers.{i}`` and
``final_norm`` (``pre`` placement only).

Padding: ``tgt_pad`` / ``pad_mask`` is the padding of the self-attention *keys* (True = real token).
Without a cache the keys are the input positions, so it is ``[batch, t]``; with a cache the keys are
the ``past`` cached positions followed by the ``t`` new ones, so it is ``[batch, past + t]`` (the
models keep that history for you).
"""

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.cache import KVCache, LayerKVCache
from transformer_conformance.reference.checking import checked, require
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.ffn import PositionWiseFFN
from transformer_conformance.reference.layernorm import LayerNorm
from transformer_conformance.reference.masks import causal_mask, combine_masks, key_padding_to_attention_mask
from transformer_conformance.reference.multihead import MultiHeadAttention, merge_heads
from transformer_conformance.reference.sublayer import residual_sublayer


def self_attention_mask(num_q: int, num_past: int, key_pad: Tensor | None, device: torch.device) -> Tensor:
    """Keep-mask ``[1 | batch, 1, num_q, num_past + num_q]``: causal (bottom-right) AND key padding.

    Claims: mask.causal.future-blind, mask.causal.alignment, mask.padding.invariance, kvcache.chunked-prefill.
    """
    num_k = num_past + num_q
    if key_pad is not None:
        require(
            key_pad.shape[-1] == num_k,
            "tgt_pad",
            f"padding of all {num_k} self-attention keys ({num_past} cached + {num_q} new)",
            f"length {key_pad.shape[-1]}",
        )
    causal = causal_mask(num_q, num_k, device=device)
    padding = None if key_pad is None else key_padding_to_attention_mask(key_pad)
    mask = combine_masks(causal, padding)
    assert mask is not None  # the causal part is always present
    return mask


def layer_cache(cache: KVCache | None, layer_index: int) -> LayerKVCache | None:
    """This layer's self-attention cache (``None`` without a cache); checks ``layer_index``.

    Claims: kvcache.equals-recompute.
    """
    if cache is None:
        return None
    require(
        0 <= layer_index < len(cache.self_attn),
        "layer_index",
        f"an index into the cache's {len(cache.self_attn)} layers",
        layer_index,
    )
    return cache.self_attn[layer_index]


def attend_with_kv(mha: MultiHeadAttention, x_q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """Multi-head attention of ``x_q`` over already projected heads ``k, v`` (``[b, h, s, d_head]``).

    Same arithmetic as ``MultiHeadAttention.forward`` after its K/V projections; used for cached
    cross-attention. Claims: kvcache.cross-computed-once, attention.cross.sources.
    """
    q = mha.project_heads(mha.w_q, x_q)
    heads, _ = scaled_dot_product_attention(q, k, v, mask)
    out: Tensor = mha.w_o(merge_heads(heads))
    return out


class _CausalSelfAttentionMixin(nn.Module):
    """The causal self-attention sublayer shared by both decoder layer kinds."""

    self_attn: MultiHeadAttention

    def self_attention_mask(
        self, num_q: int, num_past: int, key_pad: Tensor | None, device: torch.device
    ) -> Tensor:
        """The self-attention keep-mask for ``num_q`` new queries after ``num_past`` cached positions.

        Claims: mask.causal.future-blind, mask.causal.alignment.
        """
        return self_attention_mask(num_q, num_past, key_pad, device)

    def causal_self_attention(self, h: Tensor, key_pad: Tensor | None, cache: LayerKVCache | None) -> Tensor:
        """Masked self-attention of ``h`` over itself (and the cached past).

        Claims: attention.self.same-input, mask.causal.future-blind.
        """
        num_past = 0 if cache is None else cache.length
        mask = self.self_attention_mask(h.shape[1], num_past, key_pad, h.device)
        out: Tensor = self.self_attn(h, h, mask, cache)[0]
        return out


class DecoderLayer(_CausalSelfAttentionMixin):
    """Masked self-attention, cross-attention to the memory, FFN; each in a residual sublayer.

    Claims: decoder.self-attention-sources (refuted: self-attention never sees the memory),
    attention.cross.sources, attention.cross.no-causal-mask, encdec.encoder-outputs-kv, residual.post-ln.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.self_attn = MultiHeadAttention(config.d_model, config.num_heads)
        self.norm_1 = LayerNorm(config.d_model, eps=config.eps)
        self.cross_attn = MultiHeadAttention(config.d_model, config.num_heads)
        self.norm_2 = LayerNorm(config.d_model, eps=config.eps)
        self.ffn = PositionWiseFFN(config.d_model, config.d_ff, activation=config.activation)
        self.norm_3 = LayerNorm(config.d_model, eps=config.eps)
        self.dropout = nn.Dropout(config.dropout)

    def cross_attention(
        self, h: Tensor, memory: Tensor, mem_pad: Tensor | None, cache: KVCache | None, layer_index: int
    ) -> Tensor:
        """Queries from the decoder stream ``h``, keys/values from ``memory``; no causal mask.

        With a cache the memory's K/V are projected on the first call and reused afterwards.
        Claims: attention.cross.sources, attention.cross.no-causal-mask, kvcache.cross-computed-once,
        encdec.encoder-outputs-kv, attention.cross.query-previous-step-as-stated (row t of ``h``).
        """
        mask = None if mem_pad is None else key_padding_to_attention_mask(mem_pad)
        if cache is None:
            out: Tensor = self.cross_attn(h, memory, mask)[0]
            return out
        kv = cache.cross_attn[layer_index]
        if kv is None:
            kv = (
                self.cross_attn.project_heads(self.cross_attn.w_k, memory),
                self.cross_attn.project_heads(self.cross_attn.w_v, memory),
            )
            cache.cross_attn[layer_index] = kv
        require(
            kv[0].shape[2] == memory.shape[1],
            "memory",
            f"the memory the cache was filled from ({kv[0].shape[2]} positions)",
            f"{memory.shape[1]} positions",
        )
        return attend_with_kv(self.cross_attn, h, kv[0], kv[1], mask)

    @checked
    def forward(
        self,
        x: Float[Tensor, "batch tgt d_model"],
        memory: Float[Tensor, "batch src d_model"],
        tgt_pad: Bool[Tensor, "batch keys"] | None = None,
        mem_pad: Bool[Tensor, "batch src"] | None = None,
        cache: KVCache | None = None,
        layer_index: int = 0,
    ) -> Float[Tensor, "batch tgt d_model"]:
        """One decoder layer. ``tgt_pad``: padding of the self-attention keys (see the module docstring).

        Claims: mask.causal.future-blind, attention.cross.sources, attention.cross.no-causal-mask,
        decoder.self-attention-sources, residual.post-ln, kvcache.equals-recompute, kvcache.chunked-prefill.
        """
        self_cache = layer_cache(cache, layer_index)
        placement = self.config.norm_placement

        def self_part(h: Tensor) -> Tensor:
            return self.causal_self_attention(h, tgt_pad, self_cache)

        def cross_part(h: Tensor) -> Tensor:
            return self.cross_attention(h, memory, mem_pad, cache, layer_index)

        x = residual_sublayer(x, self_part, self.norm_1, placement=placement, dropout=self.dropout)
        x = residual_sublayer(x, cross_part, self.norm_2, placement=placement, dropout=self.dropout)
        x = residual_sublayer(x, self.ffn, self.norm_3, placement=placement, dropout=self.dropout)
        return x


class Decoder(nn.Module):
    """``num_layers`` decoder layers; every layer's cross-attention reads the same memory.

    Claims: encdec.memory-from-last-layer, encdec.output-length-independent.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_layers))
        self.final_norm: LayerNorm | None = (
            LayerNorm(config.d_model, eps=config.eps) if config.norm_placement == "pre" else None
        )

    @checked
    def forward(
        self,
        x: Float[Tensor, "batch tgt d_model"],
        memory: Float[Tensor, "batch src d_model"],
        tgt_pad: Bool[Tensor, "batch keys"] | None = None,
        mem_pad: Bool[Tensor, "batch src"] | None = None,
        cache: KVCache | None = None,
    ) -> Float[Tensor, "batch tgt d_model"]:
        """Run the stack; output length follows the target, never the source.

        Claims: encdec.memory-from-last-layer, encdec.output-length-independent, kvcache.equals-recompute.
        """
        for index, layer in enumerate(self.layers):
            x = layer(x, memory, tgt_pad, mem_pad, cache, index)
        if self.final_norm is not None:
            normed: Tensor = self.final_norm(x)
            x = normed
        return x


class DecoderOnlyLayer(_CausalSelfAttentionMixin):
    """A GPT-style layer: masked self-attention and FFN (no cross-attention), i.e. an encoder layer's
    sublayers and parameter names with a causal mask.

    Claims: mask.causal.future-blind, residual.post-ln, kvcache.only-kv, decoder.gpt2-encoder-stack-as-stated,
    kvcache.self-attention-reuse-as-stated.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.self_attn = MultiHeadAttention(config.d_model, config.num_heads)
        self.norm_1 = LayerNorm(config.d_model, eps=config.eps)
        self.ffn = PositionWiseFFN(config.d_model, config.d_ff, activation=config.activation)
        self.norm_2 = LayerNorm(config.d_model, eps=config.eps)
        self.dropout = nn.Dropout(config.dropout)

    @checked
    def forward(
        self,
        x: Float[Tensor, "batch length d_model"],
        pad_mask: Bool[Tensor, "batch keys"] | None = None,
        cache: KVCache | None = None,
        layer_index: int = 0,
    ) -> Float[Tensor, "batch length d_model"]:
        """One layer; ``pad_mask``: padding of the self-attention keys (see the module docstring).

        Claims: mask.causal.future-blind, residual.post-ln, kvcache.equals-recompute, kvcache.chunked-prefill.
        """
        self_cache = layer_cache(cache, layer_index)

        def self_part(h: Tensor) -> Tensor:
            return self.causal_self_attention(h, pad_mask, self_cache)

        placement = self.config.norm_placement
        x = residual_sublayer(x, self_part, self.norm_1, placement=placement, dropout=self.dropout)
        x = residual_sublayer(x, self.ffn, self.norm_2, placement=placement, dropout=self.dropout)
        return x


class DecoderOnlyStack(nn.Module):
    """``num_layers`` decoder-only layers (``layers``) and, for ``pre`` placement, ``final_norm``.

    Claims: kvcache.equals-recompute, training.parallel-equals-sequential.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(DecoderOnlyLayer(config) for _ in range(config.num_layers))
        self.final_norm: LayerNorm | None = (
            LayerNorm(config.d_model, eps=config.eps) if config.norm_placement == "pre" else None
        )

    @checked
    def forward(
        self,
        x: Float[Tensor, "batch length d_model"],
        pad_mask: Bool[Tensor, "batch keys"] | None = None,
        cache: KVCache | None = None,
    ) -> Float[Tensor, "batch length d_model"]:
        """Run the stack (optionally on a cache).

        Claims: kvcache.equals-recompute, mask.causal.future-blind.
        """
        for index, layer in enumerate(self.layers):
            x = layer(x, pad_mask, cache, index)
        if self.final_norm is not None:
            normed: Tensor = self.final_norm(x)
            x = normed
        return x


__all__ = [
    "Decoder",
    "DecoderLayer",
    "DecoderOnlyLayer",
    "DecoderOnlyStack",
    "attend_with_kv",
    "self_attention_mask",
]
