"""Whole models: the encoder-decoder of the paper and a decoder-only (GPT-style) language model.

Input of every stack: token embedding + positional encoding (sinusoidal, computed on the fly, or a
learned table), then dropout (active in train mode only). Output: ``lm_head`` (``d_model -> vocab``),
optionally tied to the (target) embedding.

Positions are absolute slots: the token in column ``j`` of the input has position ``j`` (plus the cache
position during incremental steps), whatever the padding. Padding is only a key mask, so changing the
ids under the padding changes nothing at real positions (left or right padding alike); a left-padded
and a right-padded copy of the same sentence are *not* expected to agree, because their tokens sit
at different positions.

Parameter names (canonical layout): ``EncoderDecoder``: ``src_embed, tgt_embed, encoder, decoder,
lm_head`` (+ ``src_pos_embed, tgt_pos_embed`` for learned positions); ``DecoderOnlyLM``: ``embed,
decoder, lm_head`` (+ ``pos_embed`` for learned positions). A tied ``lm_head.weight`` is the same
Parameter as the (target) embedding's ``weight``.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.cache import KVCache
from transformer_conformance.reference.checking import checked, require
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.decoder import Decoder, DecoderOnlyStack
from transformer_conformance.reference.embedding import OutputProjection, TokenEmbedding
from transformer_conformance.reference.encoder import Encoder
from transformer_conformance.reference.positional import LearnedPositionalEncoding, sinusoidal_encoding


def require_notes_architecture(config: TransformerConfig) -> None:
    """These models build the notes' architecture only; variants are ``reference.variant_lm.VariantLM``.

    Claims: arch.notes-default.
    """
    require(
        config.arch == Architecture(),
        "config.arch",
        "the notes' architecture Architecture() (build variants with reference.variant_lm.VariantLM)",
        config.arch,
    )


@dataclass
class DecoderKVCache(KVCache):
    """A ``KVCache`` that also remembers the padding of the cached positions (``[batch, position]``).

    ``key_padding`` stays ``None`` while every cached position is a real token. This is an extension of
    ``reference.cache.KVCache``: steps on a plain ``KVCache`` work as long as no padding is passed.
    Claims: kvcache.equals-recompute, mask.padding.invariance.
    """

    key_padding: Tensor | None = None
    batch: int | None = None


def new_decoder_cache(num_layers: int, batch: int | None = None) -> DecoderKVCache:
    """An empty cache for ``num_layers`` layers at position 0 (for ``batch`` sequences, when given).

    Claims: kvcache.only-kv.
    """
    cache = DecoderKVCache.empty(num_layers)
    assert isinstance(cache, DecoderKVCache)
    cache.batch = batch
    return cache


def extend_key_padding(cache: KVCache, chunk_pad: Tensor | None, batch: int, chunk: int) -> Tensor | None:
    """Padding of all self-attention keys after a step of ``chunk`` tokens: cached history + ``chunk_pad``.

    Records the new history in the cache. Returns ``None`` while no position was ever padding.
    Claims: mask.padding.invariance, kvcache.equals-recompute.
    """
    history = cache.key_padding if isinstance(cache, DecoderKVCache) else None
    if chunk_pad is None and history is None:
        return None
    require(
        isinstance(cache, DecoderKVCache),
        "cache",
        "a cache from new_cache() (DecoderKVCache) when padding is given",
        type(cache).__name__,
    )
    assert isinstance(cache, DecoderKVCache)
    device = chunk_pad.device if chunk_pad is not None else history.device  # type: ignore[union-attr]
    if history is None:
        history = torch.ones(batch, cache.position, dtype=torch.bool, device=device)
    if chunk_pad is None:
        chunk_pad = torch.ones(batch, chunk, dtype=torch.bool, device=device)
    require(
        history.shape[0] == batch, "cache", f"a cache for batch size {batch}", f"batch {history.shape[0]}"
    )
    full = torch.cat([history, chunk_pad], dim=1)
    cache.key_padding = full
    return full


def require_cache_consistent(cache: KVCache, num_layers: int, batch: int) -> None:
    """The cache has one entry per layer and its cached length equals its position.

    Claims: kvcache.equals-recompute.
    """
    require(
        len(cache.self_attn) == num_layers, "cache", f"a cache for {num_layers} layers", len(cache.self_attn)
    )
    first = cache.self_attn[0]
    require(
        first.length == cache.position,
        "cache",
        f"cached length equal to cache.position = {cache.position}",
        first.length,
    )
    cached_batch = first.k.shape[0] if first.k is not None else getattr(cache, "batch", None)
    if cached_batch is not None:
        require(cached_batch == batch, "cache", f"a cache for batch size {batch}", f"batch {cached_batch}")


def positions(
    config: TransformerConfig,
    learned: LearnedPositionalEncoding | None,
    length: int,
    offset: int,
    like: Tensor,
) -> Tensor:
    """Positional rows ``[length, d_model]`` for absolute positions ``offset ..`` in ``like``'s dtype/device.

    Claims: embedding.plus-positional, positional.sinusoidal.any-length, positional.learned.max-length.
    """
    if learned is not None:
        rows: Tensor = learned(length, offset)
        return rows.to(dtype=like.dtype)
    return sinusoidal_encoding(
        length, config.d_model, layout=config.layout, offset=offset, dtype=like.dtype, device=like.device
    )


class EncoderDecoder(nn.Module):
    """The encoder-decoder Transformer: ``encode`` the source once, ``decode`` (or ``step``) the target.

    Claims: encdec.teacher-forcing, encdec.memory-from-last-layer, encdec.output-length-independent,
    training.parallel-equals-sequential, kvcache.equals-recompute, kvcache.cross-computed-once,
    encdec.encoder-stack-as-stated (an encoder stack and a decoder stack).
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        require_notes_architecture(config)
        self.config = config
        d = config.d_model
        self.src_embed = TokenEmbedding(config.vocab_size, d, scale=config.scale_embedding)
        self.tgt_embed = TokenEmbedding(config.vocab_size, d, scale=config.scale_embedding)
        self.src_pos_embed: LearnedPositionalEncoding | None = None
        self.tgt_pos_embed: LearnedPositionalEncoding | None = None
        if config.positional == "learned":
            self.src_pos_embed = LearnedPositionalEncoding(config.max_len, d)
            self.tgt_pos_embed = LearnedPositionalEncoding(config.max_len, d)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.lm_head = OutputProjection(
            d, config.vocab_size, tied_to=self.tgt_embed if config.tie_embeddings else None
        )
        self.dropout = nn.Dropout(config.dropout)

    def embed_source(self, src: Tensor) -> Tensor:
        """Encoder input: source embedding + positions ``0..s-1`` (dropout in train mode).

        Claims: embedding.plus-positional, determinism.eval.
        """
        x: Tensor = self.src_embed(src)
        x = x + positions(self.config, self.src_pos_embed, src.shape[1], 0, x)
        dropped: Tensor = self.dropout(x)
        return dropped

    def embed_target(self, tgt: Tensor, offset: int = 0) -> Tensor:
        """Decoder input: target embedding + positions ``offset..offset+t-1`` (dropout in train mode).

        Claims: embedding.plus-positional, kvcache.equals-recompute.
        """
        x: Tensor = self.tgt_embed(tgt)
        x = x + positions(self.config, self.tgt_pos_embed, tgt.shape[1], offset, x)
        dropped: Tensor = self.dropout(x)
        return dropped

    @checked
    def encode(
        self, src: Int[Tensor, "batch src"], src_pad: Bool[Tensor, "batch src"] | None = None
    ) -> Float[Tensor, "batch src {self.config.d_model}"]:
        """The memory: the encoder's last layer output for every source position.

        Claims: encoder.output-per-position, encoder.stack, encdec.memory-from-last-layer,
        encdec.encoder-outputs-kv (the encoder outputs hidden states, not K/V).
        """
        memory: Tensor = self.encoder(self.embed_source(src), src_pad)
        return memory

    @checked
    def decode(
        self,
        tgt: Int[Tensor, "batch tgt"],
        memory: Float[Tensor, "batch src {self.config.d_model}"],
        src_pad: Bool[Tensor, "batch src"] | None = None,
        tgt_pad: Bool[Tensor, "batch tgt"] | None = None,
    ) -> Float[Tensor, "batch tgt {self.config.vocab_size}"]:
        """Teacher-forced logits for every target position at once (causal self-attention).

        Claims: encdec.teacher-forcing, encdec.output-length-independent, training.parallel-equals-sequential.
        """
        h: Tensor = self.decoder(self.embed_target(tgt), memory, tgt_pad, src_pad)
        logits: Tensor = self.lm_head(h)
        return logits

    @checked
    def forward(
        self,
        src: Int[Tensor, "batch src"],
        tgt: Int[Tensor, "batch tgt"],
        src_pad: Bool[Tensor, "batch src"] | None = None,
        tgt_pad: Bool[Tensor, "batch tgt"] | None = None,
    ) -> Float[Tensor, "batch tgt {self.config.vocab_size}"]:
        """``decode(tgt, encode(src))``: source and the whole target in one pass (teacher forcing).

        Claims: encdec.teacher-forcing, encdec.output-length-independent.
        """
        return self.decode(tgt, self.encode(src, src_pad), src_pad, tgt_pad)

    def new_cache(self, batch: int) -> DecoderKVCache:
        """An empty cache: self-attention K/V per layer, cross-attention K/V (filled by the first step).

        Claims: kvcache.only-kv, kvcache.cross-computed-once.
        """
        require(batch > 0, "batch", "a positive integer", batch)
        return new_decoder_cache(self.config.num_layers, batch)

    @checked
    def step(
        self,
        tgt_chunk: Int[Tensor, "batch chunk"],
        memory: Float[Tensor, "batch src {self.config.d_model}"],
        cache: KVCache,
        src_pad: Bool[Tensor, "batch src"] | None = None,
        tgt_pad_chunk: Bool[Tensor, "batch chunk"] | None = None,
    ) -> Float[Tensor, "batch chunk {self.config.vocab_size}"]:
        """Logits of ``chunk >= 1`` new target tokens at positions ``cache.position ..``; updates the cache.

        ``tgt_pad_chunk`` (an extension of the documented signature) marks padding among the new tokens.
        Claims: kvcache.equals-recompute, kvcache.chunked-prefill, kvcache.cross-computed-once,
        training.parallel-equals-sequential.
        """
        batch, chunk = tgt_chunk.shape
        require(chunk >= 1, "tgt_chunk", "at least one token", chunk)
        require_cache_consistent(cache, self.config.num_layers, batch)
        if cache.memory is None:
            cache.memory = memory.detach().clone()
        else:  # the cached cross K/V belong to one source: another memory would be silently ignored
            require(
                cache.memory.shape == memory.shape and bool(torch.equal(cache.memory, memory)),
                "memory",
                "the memory this cache was started with (a cache serves one source; start a new_cache)",
                f"a different memory of shape {list(memory.shape)}",
            )
        x = self.embed_target(tgt_chunk, offset=cache.position)
        key_pad = extend_key_padding(cache, tgt_pad_chunk, batch, chunk)
        h: Tensor = self.decoder(x, memory, key_pad, src_pad, cache)
        cache.position += chunk
        logits: Tensor = self.lm_head(h)
        return logits


class DecoderOnlyLM(nn.Module):
    """A decoder-only language model (GPT-style): causal self-attention layers, no encoder.

    Claims: training.parallel-equals-sequential, kvcache.equals-recompute, kvcache.chunked-prefill,
    decoding.prompt-continuation, mask.causal.future-blind, sizes.gpt2-context.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        require_notes_architecture(config)
        self.config = config
        self.embed = TokenEmbedding(config.vocab_size, config.d_model, scale=config.scale_embedding)
        self.pos_embed: LearnedPositionalEncoding | None = (
            LearnedPositionalEncoding(config.max_len, config.d_model)
            if config.positional == "learned"
            else None
        )
        self.decoder = DecoderOnlyStack(config)
        self.lm_head = OutputProjection(
            config.d_model, config.vocab_size, tied_to=self.embed if config.tie_embeddings else None
        )
        self.dropout = nn.Dropout(config.dropout)

    def embed_ids(self, ids: Tensor, offset: int = 0) -> Tensor:
        """Token embedding + positions ``offset..offset+l-1`` (absolute slots), dropout in train mode.

        Claims: embedding.plus-positional, kvcache.equals-recompute, sizes.gpt2-context.
        """
        x: Tensor = self.embed(ids)
        x = x + positions(self.config, self.pos_embed, ids.shape[1], offset, x)
        dropped: Tensor = self.dropout(x)
        return dropped

    @checked
    def forward(
        self, ids: Int[Tensor, "batch length"], pad_mask: Bool[Tensor, "batch length"] | None = None
    ) -> Float[Tensor, "batch length {self.config.vocab_size}"]:
        """Next-token logits at every position (teacher forcing); ``pad_mask`` hides padding keys.

        Claims: training.parallel-equals-sequential, mask.causal.future-blind, mask.padding.invariance,
        batch.independence, determinism.eval.
        """
        h: Tensor = self.decoder(self.embed_ids(ids), pad_mask)
        logits: Tensor = self.lm_head(h)
        return logits

    def new_cache(self, batch: int) -> DecoderKVCache:
        """An empty self-attention cache for every layer. Claims: kvcache.only-kv."""
        require(batch > 0, "batch", "a positive integer", batch)
        return new_decoder_cache(self.config.num_layers, batch)

    @checked
    def step(
        self,
        ids_chunk: Int[Tensor, "batch chunk"],
        cache: KVCache,
        pad_mask_chunk: Bool[Tensor, "batch chunk"] | None = None,
    ) -> Float[Tensor, "batch chunk {self.config.vocab_size}"]:
        """Logits of ``chunk >= 1`` new tokens at positions ``cache.position ..``; updates the cache.

        ``chunk == 1`` is token-by-token decoding; ``chunk > 1`` on a warm cache is chunked prefill
        (bottom-right causal alignment). Claims: kvcache.equals-recompute, kvcache.chunked-prefill,
        kvcache.only-kv, training.parallel-equals-sequential.
        """
        batch, chunk = ids_chunk.shape
        require(chunk >= 1, "ids_chunk", "at least one token", chunk)
        require_cache_consistent(cache, self.config.num_layers, batch)
        x = self.embed_ids(ids_chunk, offset=cache.position)
        key_pad = extend_key_padding(cache, pad_mask_chunk, batch, chunk)
        h: Tensor = self.decoder(x, key_pad, cache)
        cache.position += chunk
        logits: Tensor = self.lm_head(h)
        return logits


__all__ = ["DecoderKVCache", "DecoderOnlyLM", "EncoderDecoder", "new_decoder_cache"]
