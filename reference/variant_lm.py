"""A decoder-only language model built from any ``TransformerConfig`` (``config.arch`` picks the variant).

Per layer: attention (``VariantAttention``: ``num_kv_heads`` KV heads, rotary applied to q and k at
their absolute position ids *before* k is cached, ALiBi or T5 relative bias, sliding window, scale
override, soft-capping) and an FFN (``reference.gated_ffn.FeedForward``), joined sequentially with
``post`` or ``pre`` norms, or in parallel (GPT-J/NeoX). A ``pre`` stack ends with ``final_norm``.

Positions: the token in column ``j`` of a call after ``past`` cached tokens sits in slot ``past + j``.
Masks (causal, window, padding), ALiBi and relative buckets use slots. Position ids (rotary and
absolute tables) are the slots, or, with ``arch.position_ids == "from_first_token"``, the number of
real tokens before the token in its row (pads get 0), which makes a left-padded row equal its
unpadded copy whatever the position kind.

Cache (``VariantCache``): per layer the keys (already rotated) and values of ``num_kv_heads`` heads,
the padding of the cached keys and each row's count of real tokens. With a sliding window of ``w``
the cache keeps only the last ``w - 1`` positions after each call (the rest can never be seen again).

Parameter names: ``embed``, ``pos_embed`` (learned absolute only), ``relative_bias`` (relative only,
shared by all layers as T5), ``layers.{i}.norm_1``, ``layers.{i}.attn.w_q|w_k|w_v|w_o``,
``layers.{i}.norm_2`` (absent with ``shared_norm``), ``layers.{i}.ffn.w_gate|w_up|w_down``,
``final_norm`` (pre + ``arch.final_norm``), ``lm_head``.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from transformer_conformance.reference.alibi import alibi_bias, alibi_slopes
from transformer_conformance.reference.cache import LayerKVCache
from transformer_conformance.reference.checking import checked, require
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.embedding import OutputProjection, TokenEmbedding
from transformer_conformance.reference.gated_ffn import FeedForward
from transformer_conformance.reference.grouped import grouped_attention, window_keep
from transformer_conformance.reference.layernorm import LayerNorm
from transformer_conformance.reference.multihead import merge_heads, split_heads
from transformer_conformance.reference.positional import LearnedPositionalEncoding, sinusoidal_encoding
from transformer_conformance.reference.relative_bias import RelativePositionBias
from transformer_conformance.reference.rmsnorm import RMSNorm
from transformer_conformance.reference.rotary import apply_rotary
from transformer_conformance.reference.sublayer import residual_sublayer


def make_norm(config: TransformerConfig) -> nn.Module:
    """The declared norm over ``d_model`` with the config's ``eps``. Claims: rmsnorm.formula."""
    if config.arch.norm == "rmsnorm":
        return RMSNorm(config.d_model, config.eps, offset=config.arch.norm_offset)
    return LayerNorm(config.d_model, eps=config.eps)


class VariantAttention(nn.Module):
    """Causal self-attention with ``num_heads`` query heads over ``num_kv_heads`` KV heads.

    Claims: gqa.repeat-equivalence, rotary.relative-dot-product, lm.variant-cache-equals-recompute.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        arch, d, dh = config.arch, config.d_model, config.d_head
        self.config = config
        self.num_heads = config.num_heads
        self.num_kv_heads = arch.kv_heads(config.num_heads)
        self.w_q = nn.Linear(d, self.num_heads * dh, bias=arch.qkv_bias)
        self.w_k = nn.Linear(d, self.num_kv_heads * dh, bias=arch.qkv_bias)
        self.w_v = nn.Linear(d, self.num_kv_heads * dh, bias=arch.qkv_bias)
        self.w_o = nn.Linear(self.num_heads * dh, d, bias=arch.out_bias)

    @checked
    def forward(
        self,
        x: Float[Tensor, "batch new {self.config.d_model}"],
        position_ids: Int[Tensor, "#batch new"],
        keep: Bool[Tensor, "..."],
        bias: Float[Tensor, "..."] | None,
        cache: LayerKVCache | None,
    ) -> Float[Tensor, "batch new {self.config.d_model}"]:
        """``x`` at ``position_ids``; ``keep``/``bias`` broadcast to ``[b, heads, new, cached + new]``.

        Claims: gqa.repeat-equivalence, rotary.relative-dot-product, lm.variant-cache-equals-recompute.
        """
        arch = self.config.arch
        q = split_heads(self.w_q(x), self.num_heads)
        k = split_heads(self.w_k(x), self.num_kv_heads)
        v = split_heads(self.w_v(x), self.num_kv_heads)
        if arch.positions == "rotary":
            theta, fraction, layout = arch.rope_theta, arch.rope_fraction, arch.rope_layout
            q = apply_rotary(q, position_ids, theta=theta, fraction=fraction, layout=layout)
            k = apply_rotary(k, position_ids, theta=theta, fraction=fraction, layout=layout)
        if cache is not None:
            k, v = cache.append(k, v)
        heads, _ = grouped_attention(
            q, k, v, keep, bias, mapping=arch.kv_mapping, scale=arch.attn_scale, softcap=arch.attn_softcap
        )
        out: Tensor = self.w_o(merge_heads(heads))
        return out


class VariantBlock(nn.Module):
    """One layer: sequential (post or pre norms) or parallel attention + FFN.

    Claims: block.parallel-formula, residual.post-ln.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        arch = config.arch
        self.config = config
        self.norm_1 = make_norm(config)
        self.attn = VariantAttention(config)
        self.norm_2 = None if arch.shared_norm else make_norm(config)
        activation = arch.activation if arch.activation is not None else config.activation
        self.ffn = FeedForward(
            config.d_model, config.d_ff, activation=activation, gated=arch.gated, bias=arch.ffn_bias
        )
        self.dropout = nn.Dropout(config.dropout)

    @checked
    def forward(
        self,
        x: Float[Tensor, "batch new {self.config.d_model}"],
        position_ids: Int[Tensor, "#batch new"],
        keep: Bool[Tensor, "..."],
        bias: Float[Tensor, "..."] | None,
        cache: LayerKVCache | None,
    ) -> Float[Tensor, "batch new {self.config.d_model}"]:
        """Apply the layer (arguments as ``VariantAttention.forward``).

        Claims: block.parallel-formula, residual.post-ln.
        """

        def attend(h: Tensor) -> Tensor:
            out: Tensor = self.attn(h, position_ids, keep, bias, cache)
            return out

        norm_2 = self.norm_2 if self.norm_2 is not None else self.norm_1
        if self.config.arch.block == "parallel":
            attended: Tensor = self.dropout(attend(self.norm_1(x)))
            fed: Tensor = self.dropout(self.ffn(norm_2(x)))
            return x + attended + fed
        placement = self.config.norm_placement
        x = residual_sublayer(x, attend, self.norm_1, placement=placement, dropout=self.dropout)
        return residual_sublayer(x, self.ffn, norm_2, placement=placement, dropout=self.dropout)


@dataclass
class VariantCache:
    """Cache of a ``VariantLM``: per-layer K/V, the slot count, key padding, real-token counts per row.

    ``keep_last`` (the window minus one, or ``None``) bounds how many positions stay cached.
    Claims: lm.variant-cache-equals-recompute, window.cache-drop.
    """

    layers: list[LayerKVCache] = field(default_factory=list)
    position: int = 0
    key_padding: Tensor | None = None
    real_count: Tensor | None = None
    keep_last: int | None = None

    @property
    def length(self) -> int:
        """Number of cached positions (``position`` unless the window dropped some)."""
        return self.layers[0].length if self.layers else 0

    def trim(self) -> None:
        """Drop the positions older than ``keep_last`` (they left every future query's window)."""
        if self.keep_last is None or self.length <= self.keep_last:
            return
        start = self.length - self.keep_last
        for layer in self.layers:
            assert layer.k is not None and layer.v is not None
            layer.k, layer.v = layer.k[:, :, start:], layer.v[:, :, start:]
        if self.key_padding is not None:
            self.key_padding = self.key_padding[:, start:]


def learned_positions(config: TransformerConfig) -> LearnedPositionalEncoding | None:
    """The learned absolute table (``max_len + arch.position_offset`` rows), when the config has one.

    Claims: positional.learned.max-length.
    """
    if config.arch.positions == "absolute" and config.positional == "learned":
        return LearnedPositionalEncoding(config.max_len + config.arch.position_offset, config.d_model)
    return None


def relative_bias_for(config: TransformerConfig, *, bidirectional: bool) -> RelativePositionBias | None:
    """The T5 bucket table of a stack (shared by its layers), when ``arch.positions == "relative"``.

    Claims: relbias.buckets.
    """
    arch = config.arch
    if arch.positions != "relative":
        return None
    return RelativePositionBias(
        config.num_heads,
        bidirectional=bidirectional,
        num_buckets=arch.relative_buckets,
        max_distance=arch.relative_max_distance,
    )


def position_ids_for(
    config: TransformerConfig, real: Tensor, past: int, cache: VariantCache | None
) -> Tensor:
    """Position id of each new token ``[b, n]``: its slot, or its row's count of earlier real tokens.

    Claims: lm.left-padding-position-ids.
    """
    b, n = real.shape
    if config.arch.position_ids == "slots":
        return torch.arange(past, past + n, device=real.device).expand(b, n)
    counts = torch.cumsum(real.long(), dim=1)  # real tokens up to and including this one
    if cache is not None and cache.real_count is not None:
        counts = counts + cache.real_count[:, None]
    if cache is not None:
        cache.real_count = counts[:, -1].clone()
    return (counts - 1).clamp(min=0)


def absolute_rows(
    config: TransformerConfig, pos_embed: LearnedPositionalEncoding | None, position_ids: Tensor, like: Tensor
) -> Tensor:
    """Rows ``[b, n, d_model]`` of the sinusoidal or learned table at ``position_ids`` (the learned table
    read ``arch.position_offset`` rows further on, BART).

    Claims: embedding.plus-positional.
    """
    offset = config.arch.position_offset if pos_embed is not None else 0
    top = int(position_ids.max()) + 1 + offset if position_ids.numel() else 0
    if pos_embed is not None:
        table: Tensor = pos_embed(top, 0)
    else:
        table = sinusoidal_encoding(
            top, config.d_model, layout=config.layout, dtype=like.dtype, device=like.device
        )
    return table.to(like.dtype)[position_ids + offset]


def self_attention_plan(
    config: TransformerConfig,
    relative_bias: RelativePositionBias | None,
    real: Tensor,
    cache: VariantCache | None,
    *,
    causal: bool,
    positions: Callable[[Tensor, int, VariantCache | None], Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(position ids ``[b, n]``, keep, bias) of ``n`` new tokens (``real``: True = real token) after the
    cached ones; the cache records the padding of its keys. ``causal=False`` (an encoder) lets every
    position see every real key; masks, ALiBi and relative buckets use slots. ``positions`` replaces
    ``position_ids_for`` (a model's own ``position_ids`` method).

    Claims: mask.padding.invariance, mask.causal.future-blind, encoder.model-bidirectional.
    """
    arch, (b, n), device = config.arch, real.shape, real.device
    past = cache.position if cache is not None else 0
    cached = cache.length if cache is not None else 0
    key_pad = real
    if cache is not None:
        history = cache.key_padding
        if history is None:
            history = torch.ones(b, cached, dtype=torch.bool, device=device)
        require(history.shape[0] == b, "cache", f"a cache for batch size {b}", history.shape[0])
        key_pad = torch.cat([history, real], dim=1)
        cache.key_padding = key_pad
    position_ids = (positions or partial(position_ids_for, config))(real, past, cache)
    query_slots = torch.arange(past, past + n, device=device)
    key_slots = torch.arange(past - cached, past + n, device=device)
    keep = key_pad[:, None, None, :]
    if causal:
        keep = window_keep(query_slots, key_slots, arch.sliding_window)[None, None] & keep
    bias: Tensor | None = None
    if arch.positions == "alibi":
        slopes = alibi_slopes(config.num_heads).to(device=device)
        bias = alibi_bias(slopes, query_slots, key_slots)[None]
    elif relative_bias is not None:
        bias = relative_bias(query_slots, key_slots)[None]
    return position_ids, keep, bias


class VariantLM(nn.Module):
    """Decoder-only LM for any architecture ``config.arch`` declares.

    Claims: lm.variant-cache-equals-recompute, arch.notes-default,
    lm.left-padding-position-ids, lm.llama-equals-hf, lm.mistral-equals-hf, lm.neox-equals-hf,
    block.final-norm.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        arch = config.arch
        require(
            config.norm_placement == "pre" or arch.block == "sequential",
            "config.norm_placement",
            "'pre' for a parallel block",
            repr(config.norm_placement),
        )
        self.config = config
        self.embed = TokenEmbedding(config.vocab_size, config.d_model, scale=config.scale_embedding)
        self.pos_embed = learned_positions(config)
        self.embed_norm = make_norm(config) if arch.embed_norm else None
        self.relative_bias = relative_bias_for(config, bidirectional=False)
        self.layers = nn.ModuleList(VariantBlock(config) for _ in range(config.num_layers))
        self.final_norm = make_norm(config) if config.norm_placement == "pre" and arch.final_norm else None
        self.lm_head = OutputProjection(
            config.d_model, config.vocab_size, tied_to=self.embed if config.tie_embeddings else None
        )
        self.dropout = nn.Dropout(config.dropout)

    def new_cache(self, batch: int, *, drop_outside_window: bool = True) -> VariantCache:
        """An empty cache; with a window ``w`` it keeps only the last ``w - 1`` positions unless told not to.

        Claims: window.cache-drop.
        """
        require(batch > 0, "batch", "a positive integer", batch)
        window = self.config.arch.sliding_window
        keep_last = window - 1 if window is not None and drop_outside_window else None
        return VariantCache(layers=[LayerKVCache() for _ in self.layers], keep_last=keep_last)

    def position_ids(self, real: Tensor, past: int, cache: VariantCache | None) -> Tensor:
        """Position ids of the new tokens (``position_ids_for``). Claims: lm.left-padding-position-ids."""
        return position_ids_for(self.config, real, past, cache)

    def absolute_positions(self, position_ids: Tensor, like: Tensor) -> Tensor:
        """Rows ``[b, n, d_model]`` of the sinusoidal or learned table at ``position_ids``."""
        return absolute_rows(self.config, self.pos_embed, position_ids, like)

    def run(self, ids: Tensor, pad: Tensor | None, cache: VariantCache | None) -> Tensor:
        """Shared body of ``forward`` and ``step``: logits of the new tokens, cache updated."""
        b, n = ids.shape
        real = pad if pad is not None else torch.ones(b, n, dtype=torch.bool, device=ids.device)
        position_ids, keep, bias = self_attention_plan(
            self.config, self.relative_bias, real, cache, causal=True, positions=self.position_ids
        )
        x: Tensor = self.embed(ids)
        if self.config.arch.positions == "absolute":
            x = x + self.absolute_positions(position_ids, x)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        x = self.dropout(x)
        for index, layer in enumerate(self.layers):
            x = layer(x, position_ids, keep, bias, cache.layers[index] if cache is not None else None)
        if cache is not None:
            cache.position += n
            cache.trim()
        return self.head(x)

    def head(self, x: Tensor) -> Tensor:
        """Logits of the last residual stream: ``lm_head(final_norm(x))`` (no norm in a post stack).

        Claims: block.final-norm.
        """
        if self.final_norm is not None:
            x = self.final_norm(x)
        logits: Tensor = self.lm_head(x)
        return logits

    @checked
    def forward(
        self, ids: Int[Tensor, "batch length"], pad_mask: Bool[Tensor, "batch length"] | None = None
    ) -> Float[Tensor, "batch length {self.config.vocab_size}"]:
        """Next-token logits at every position; ``pad_mask`` is True for real tokens.

        Claims: lm.variant-cache-equals-recompute, lm.left-padding-position-ids.
        """
        return self.run(ids, pad_mask, None)

    @checked
    def step(
        self,
        ids_chunk: Int[Tensor, "batch chunk"],
        cache: VariantCache,
        pad_mask_chunk: Bool[Tensor, "batch chunk"] | None = None,
    ) -> Float[Tensor, "batch chunk {self.config.vocab_size}"]:
        """Logits of ``chunk >= 1`` new tokens after the cached ones; updates the cache.

        Claims: lm.variant-cache-equals-recompute, window.cache-drop.
        """
        require(ids_chunk.shape[1] >= 1, "ids_chunk", "at least one token", ids_chunk.shape[1])
        require(
            len(cache.layers) == len(self.layers),
            "cache",
            f"a cache for {len(self.layers)} layers",
            len(cache.layers),
        )
        return self.run(ids_chunk, pad_mask_chunk, cache)


__all__ = ["VariantAttention", "VariantBlock", "VariantCache", "VariantLM"]
