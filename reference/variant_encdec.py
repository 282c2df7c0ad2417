"""Encoder-only (BERT-like) and encoder-decoder (BART-, T5-like) models for any ``TransformerConfig``.

Built from the blocks of ``reference.variant_lm`` (``VariantBlock``, ``VariantAttention``, the
position, mask and bias plan ``self_attention_plan``); what is new here is a stack over embedded
tokens, a decoder block with cross-attention and the two model classes.

A stack (``VariantStack``) adds the declared positions to its input (absolute table, or rotary / ALiBi /
T5 buckets inside attention), applies ``arch.embed_norm`` (BERT, BART), dropout, its layers and, in a
``pre`` stack with ``arch.final_norm``, a final norm. An encoder stack is bidirectional: every position
sees every real key (no causal mask, T5 buckets bidirectional); a decoder stack is causal and each
layer cross-attends to the memory (no positions in cross-attention, as BART and T5).

Parameter names: ``VariantEncoder``: ``embed``, ``encoder.*``. ``VariantEncoderDecoder``: ``embed``
(``arch.shared_embeddings``) or ``src_embed`` and ``tgt_embed``, ``encoder.*``, ``decoder.*``,
``lm_head`` (tied to the target embedding with ``tie_embeddings``; ``arch.head_rescale`` multiplies the
last hidden state by ``d_model ** -0.5`` first, T5). A stack: ``pos_embed`` (learned absolute only,
``max_len + arch.position_offset`` rows), ``embed_norm``, ``relative_bias``, ``layers.{i}.norm_1``,
``layers.{i}.attn.w_q|w_k|w_v|w_o``, decoder only ``layers.{i}.cross_norm`` and
``layers.{i}.cross_attn.w_q|w_k|w_v|w_o``, ``layers.{i}.norm_2``, ``layers.{i}.ffn.w_gate|w_up|w_down``,
``final_norm``.
"""

from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from transformer_conformance.reference.cache import LayerKVCache
from transformer_conformance.reference.checking import checked, require
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.embedding import OutputProjection, TokenEmbedding
from transformer_conformance.reference.gated_ffn import FeedForward
from transformer_conformance.reference.grouped import grouped_attention
from transformer_conformance.reference.multihead import merge_heads, split_heads
from transformer_conformance.reference.sublayer import residual_sublayer
from transformer_conformance.reference.variant_lm import (
    VariantAttention,
    VariantBlock,
    VariantCache,
    absolute_rows,
    learned_positions,
    make_norm,
    relative_bias_for,
    self_attention_plan,
)


class VariantCrossAttention(nn.Module):
    """Queries from the decoder stream, keys and values from the memory (projected once per cache).

    Claims: attention.cross.sources, kvcache.cross-computed-once.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        arch, d, dh = config.arch, config.d_model, config.d_head
        self.config = config
        self.num_heads, self.num_kv_heads = config.num_heads, arch.kv_heads(config.num_heads)
        self.w_q = nn.Linear(d, self.num_heads * dh, bias=arch.qkv_bias)
        self.w_k = nn.Linear(d, self.num_kv_heads * dh, bias=arch.qkv_bias)
        self.w_v = nn.Linear(d, self.num_kv_heads * dh, bias=arch.qkv_bias)
        self.w_o = nn.Linear(self.num_heads * dh, d, bias=arch.out_bias)

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """The memory's keys and values ``[b, kv_heads, s, d_head]``."""
        return split_heads(self.w_k(memory), self.num_kv_heads), split_heads(
            self.w_v(memory), self.num_kv_heads
        )

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], keep: Tensor | None) -> Tensor:
        """``x`` [b, t, d] attends to the memory's ``kv``; ``keep`` broadcasts to ``[b, h, t, s]``."""
        arch = self.config.arch
        q = split_heads(self.w_q(x), self.num_heads)
        heads, _ = grouped_attention(
            q,
            kv[0],
            kv[1],
            keep,
            None,
            mapping=arch.kv_mapping,
            scale=arch.attn_scale,
            softcap=arch.attn_softcap,
        )
        out: Tensor = self.w_o(merge_heads(heads))
        return out


class VariantDecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to the memory, FFN; each a residual sublayer (post or pre).

    Claims: residual.post-ln, attention.cross.sources.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        arch = config.arch
        require(
            arch.block == "sequential", "config.arch.block", "'sequential' in a decoder block", arch.block
        )
        self.config = config
        self.norm_1 = make_norm(config)
        self.attn = VariantAttention(config)
        self.cross_norm = make_norm(config)
        self.cross_attn = VariantCrossAttention(config)
        self.norm_2 = make_norm(config)
        activation = arch.activation if arch.activation is not None else config.activation
        self.ffn = FeedForward(
            config.d_model, config.d_ff, activation=activation, gated=arch.gated, bias=arch.ffn_bias
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        position_ids: Tensor,
        keep: Tensor,
        bias: Tensor | None,
        cache: LayerKVCache | None,
        memory_kv: tuple[Tensor, Tensor],
        memory_keep: Tensor | None,
    ) -> Tensor:
        """Apply the layer (self-attention arguments as ``VariantAttention.forward``)."""
        placement, drop = self.config.norm_placement, self.dropout

        def attend(h: Tensor) -> Tensor:
            out: Tensor = self.attn(h, position_ids, keep, bias, cache)
            return out

        def cross(h: Tensor) -> Tensor:
            out: Tensor = self.cross_attn(h, memory_kv, memory_keep)
            return out

        x = residual_sublayer(x, attend, self.norm_1, placement=placement, dropout=drop)
        x = residual_sublayer(x, cross, self.cross_norm, placement=placement, dropout=drop)
        return residual_sublayer(x, self.ffn, self.norm_2, placement=placement, dropout=drop)


@dataclass
class VariantEncDecCache(VariantCache):
    """Decoder self-attention K/V (as ``VariantCache``), the memory it serves and each layer's memory K/V.

    Claims: kvcache.cross-computed-once, kvcache.equals-recompute.
    """

    memory: Tensor | None = None
    cross: list[tuple[Tensor, Tensor]] = field(default_factory=list)


class VariantStack(nn.Module):
    """An encoder (bidirectional) or decoder (causal, cross-attending) stack over embedded tokens.

    Claims: encoder.model-bidirectional, encoder.model-padding-invariance, block.final-norm.
    """

    def __init__(self, config: TransformerConfig, *, decoder: bool) -> None:
        super().__init__()
        arch = config.arch
        if not decoder:
            require(
                arch.sliding_window is None,
                "config.arch.sliding_window",
                "None in an encoder",
                arch.sliding_window,
            )
            require(
                arch.positions != "alibi", "config.arch.positions", "no ALiBi in an encoder", arch.positions
            )
        self.config, self.decoder = config, decoder
        #: Whether self-attention is causal (a decoder's is, an encoder's is not).
        self.causal = decoder
        self.pos_embed = learned_positions(config)
        self.embed_norm = make_norm(config) if arch.embed_norm else None
        self.relative_bias = relative_bias_for(config, bidirectional=not decoder)
        block = VariantDecoderBlock if decoder else VariantBlock
        self.layers = nn.ModuleList(block(config) for _ in range(config.num_layers))
        self.final_norm = make_norm(config) if config.norm_placement == "pre" and arch.final_norm else None
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        pad: Tensor | None,
        memory: Tensor | None = None,
        memory_pad: Tensor | None = None,
        cache: VariantEncDecCache | None = None,
    ) -> Tensor:
        """Hidden states of the embedded tokens ``x`` [b, n, d] (``pad``: True = real token)."""
        b, n = x.shape[:2]
        real = pad if pad is not None else torch.ones(b, n, dtype=torch.bool, device=x.device)
        position_ids, keep, bias = self_attention_plan(
            self.config, self.relative_bias, real, cache, causal=self.causal
        )
        if self.config.arch.positions == "absolute":
            x = x + absolute_rows(self.config, self.pos_embed, position_ids, x)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        x = self.dropout(x)
        memory_keep = None if memory_pad is None else memory_pad[:, None, None, :]
        for index, layer in enumerate(self.layers):
            if not self.decoder:
                x = layer(x, position_ids, keep, bias, None)
                continue
            assert memory is not None
            kv = self.memory_kv(index, memory, cache)
            layer_cache = cache.layers[index] if cache is not None else None
            x = layer(x, position_ids, keep, bias, layer_cache, kv, memory_keep)
        if cache is not None:
            cache.position += n
        return self.final_norm(x) if self.final_norm is not None else x

    def memory_kv(
        self, index: int, memory: Tensor, cache: VariantEncDecCache | None
    ) -> tuple[Tensor, Tensor]:
        """Layer ``index``'s memory K/V: from the cache after its first step (computed once)."""
        layer = self.layers[index]
        assert isinstance(layer, VariantDecoderBlock)
        if cache is None:
            return layer.cross_attn.memory_kv(memory)
        if len(cache.cross) <= index:
            cache.cross.append(layer.cross_attn.memory_kv(memory))
        return cache.cross[index]


class VariantEncoder(nn.Module):
    """An encoder-only model (BERT-like): token embedding and a bidirectional stack -> hidden states.

    Claims: encoder.model-bidirectional, encoder.model-padding-invariance, encoder.bert-equals-hf.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = TokenEmbedding(config.vocab_size, config.d_model, scale=config.scale_embedding)
        self.encoder = VariantStack(config, decoder=False)

    @checked
    def forward(
        self, ids: Int[Tensor, "batch length"], pad_mask: Bool[Tensor, "batch length"] | None = None
    ) -> Float[Tensor, "batch length {self.config.d_model}"]:
        """The last layer's hidden state at every position; ``pad_mask`` is True for real tokens.

        Claims: encoder.model-bidirectional, encoder.model-padding-invariance.
        """
        out: Tensor = self.encoder(self.embed(ids), pad_mask)
        return out


class VariantEncoderDecoder(nn.Module):
    """An encoder-decoder for any declared architecture, with the API of ``reference.model.EncoderDecoder``.

    Claims: encdec.teacher-forcing, kvcache.equals-recompute, kvcache.cross-computed-once,
    encdec.bart-equals-hf, encdec.t5-equals-hf, scoring.unscaled-t5.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        arch, d = config.arch, config.d_model
        self.config = config
        self.embed: TokenEmbedding | None = None
        self.src_embed: TokenEmbedding | None = None
        self.tgt_embed: TokenEmbedding | None = None
        if arch.shared_embeddings:
            self.embed = TokenEmbedding(config.vocab_size, d, scale=config.scale_embedding)
        else:
            self.src_embed = TokenEmbedding(config.vocab_size, d, scale=config.scale_embedding)
            self.tgt_embed = TokenEmbedding(config.vocab_size, d, scale=config.scale_embedding)
        self.encoder = VariantStack(config, decoder=False)
        self.decoder = VariantStack(config, decoder=True)
        target = self.embed if self.embed is not None else self.tgt_embed
        self.lm_head = OutputProjection(
            d, config.vocab_size, tied_to=target if config.tie_embeddings else None
        )

    def _embed(self, ids: Tensor, source: bool) -> Tensor:
        table = self.embed if self.embed is not None else (self.src_embed if source else self.tgt_embed)
        assert table is not None
        out: Tensor = table(ids)
        return out

    def head(self, h: Tensor) -> Tensor:
        """Logits of the decoder's last hidden state (times ``d_model ** -0.5`` with ``arch.head_rescale``).

        Claims: block.head-rescale.
        """
        if self.config.arch.head_rescale:
            h = h * self.config.d_model**-0.5
        logits: Tensor = self.lm_head(h)
        return logits

    @checked
    def encode(
        self, src: Int[Tensor, "batch src"], src_pad: Bool[Tensor, "batch src"] | None = None
    ) -> Float[Tensor, "batch src {self.config.d_model}"]:
        """The memory: the encoder stack's output. Claims: encdec.memory-from-last-layer."""
        out: Tensor = self.encoder(self._embed(src, True), src_pad)
        return out

    @checked
    def decode(
        self,
        tgt: Int[Tensor, "batch tgt"],
        memory: Float[Tensor, "batch src {self.config.d_model}"],
        src_pad: Bool[Tensor, "batch src"] | None = None,
        tgt_pad: Bool[Tensor, "batch tgt"] | None = None,
    ) -> Float[Tensor, "batch tgt {self.config.vocab_size}"]:
        """Teacher-forced logits of every target position. Claims: encdec.teacher-forcing."""
        h: Tensor = self.decoder(self._embed(tgt, False), tgt_pad, memory, src_pad)
        return self.head(h)

    @checked
    def forward(
        self,
        src: Int[Tensor, "batch src"],
        tgt: Int[Tensor, "batch tgt"],
        src_pad: Bool[Tensor, "batch src"] | None = None,
        tgt_pad: Bool[Tensor, "batch tgt"] | None = None,
    ) -> Float[Tensor, "batch tgt {self.config.vocab_size}"]:
        """``decode(tgt, encode(src))``. Claims: encdec.teacher-forcing."""
        return self.decode(tgt, self.encode(src, src_pad), src_pad, tgt_pad)

    def new_cache(self, batch: int) -> VariantEncDecCache:
        """An empty cache (decoder self-attention K/V; memory K/V filled by the first step).

        Claims: kvcache.only-kv, kvcache.cross-computed-once.
        """
        require(batch > 0, "batch", "a positive integer", batch)
        return VariantEncDecCache(layers=[LayerKVCache() for _ in range(self.config.num_layers)])

    @checked
    def step(
        self,
        tgt_chunk: Int[Tensor, "batch chunk"],
        memory: Float[Tensor, "batch src {self.config.d_model}"],
        cache: VariantEncDecCache,
        src_pad: Bool[Tensor, "batch src"] | None = None,
        tgt_pad_chunk: Bool[Tensor, "batch chunk"] | None = None,
    ) -> Float[Tensor, "batch chunk {self.config.vocab_size}"]:
        """Logits of ``chunk >= 1`` new target tokens after the cached ones (``tgt_pad_chunk``: their
        padding, True = real token); updates the cache.

        Claims: kvcache.equals-recompute, kvcache.chunked-prefill, kvcache.cross-computed-once,
        encdec.cache-padded-prompts.
        """
        require(tgt_chunk.shape[1] >= 1, "tgt_chunk", "at least one token", tgt_chunk.shape[1])
        require(
            isinstance(cache, VariantEncDecCache) and len(cache.layers) == self.config.num_layers,
            "cache",
            f"a cache from new_cache() for {self.config.num_layers} layers",
            type(cache).__name__,
        )
        if cache.memory is None:
            cache.memory = memory.detach().clone()
        else:
            require(
                cache.memory.shape == memory.shape and bool(torch.equal(cache.memory, memory)),
                "memory",
                "the memory this cache was started with (a cache serves one source; start a new_cache)",
                f"a different memory of shape {list(memory.shape)}",
            )
        h: Tensor = self.decoder(self._embed(tgt_chunk, False), tgt_pad_chunk, memory, src_pad, cache)
        return self.head(h)


__all__ = [
    "VariantCrossAttention",
    "VariantDecoderBlock",
    "VariantEncDecCache",
    "VariantEncoder",
    "VariantEncoderDecoder",
    "VariantStack",
]
