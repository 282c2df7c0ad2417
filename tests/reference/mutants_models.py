"""Planted-bug models, layers and generators, used to show that the model-level checks have teeth.

Each mutant differs from the reference by one deliberate mistake (named in its docstring). Layer
mutants are installed into a built reference model with ``swap_layer_class`` (same parameters, only
the behaviour changes). The tests run the same property check on the reference (must pass) and on
the mutant (must be rejected).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_conformance.reference.cache import LayerKVCache
from transformer_conformance.reference.decoder import DecoderLayer, DecoderOnlyLayer
from transformer_conformance.reference.encoder import Encoder, EncoderLayer
from transformer_conformance.reference.masks import causal_mask, combine_masks, key_padding_to_attention_mask
from transformer_conformance.reference.model import DecoderOnlyLM, EncoderDecoder
from transformer_conformance.reference.sublayer import residual_sublayer


def swap_layer_class(stack: nn.Module, cls: type) -> None:
    """Re-class every layer of ``stack.layers`` (parameters kept, behaviour replaced)."""
    for layer in stack.layers:  # type: ignore[union-attr]
        layer.__class__ = cls


def _padding_only(num_q: int, num_past: int, key_pad: Tensor | None, device: torch.device) -> Tensor:
    everything = torch.ones(num_q, num_past + num_q, dtype=torch.bool, device=device)
    pad = None if key_pad is None else key_padding_to_attention_mask(key_pad)
    mask = combine_masks(everything, pad)
    assert mask is not None
    return mask


# ---------------------------------------------------------------- causal masking


class NoCausalMixin:
    """Bug: self-attention has no causal mask at all (only the key padding)."""

    def self_attention_mask(self, num_q, num_past, key_pad, device):
        return _padding_only(num_q, num_past, key_pad, device)


class NoCausalDecoderOnlyLayer(NoCausalMixin, DecoderOnlyLayer):
    """Bug: decoder-only self-attention sees the future."""


class NoCausalDecoderLayer(NoCausalMixin, DecoderLayer):
    """Bug: encoder-decoder self-attention sees the future target tokens."""


class CachedPathNoCausalLayer(DecoderOnlyLayer):
    """Bug: the causal mask is dropped whenever the cache already holds positions (cached path)."""

    def self_attention_mask(self, num_q, num_past, key_pad, device):
        if num_past > 0:
            return _padding_only(num_q, num_past, key_pad, device)
        return super().self_attention_mask(num_q, num_past, key_pad, device)


class PrefixBlindChunkLayer(DecoderOnlyLayer):
    """Bug: a chunk of several tokens on a warm cache attends only within itself (ignores the prefix).

    The chunk's K/V are still appended, so the cache stays consistent and single-token steps are right.
    """

    def causal_self_attention(self, h: Tensor, key_pad: Tensor | None, cache: LayerKVCache | None) -> Tensor:
        if cache is None or cache.length == 0 or h.shape[1] == 1:
            return super().causal_self_attention(h, key_pad, cache)
        past = cache.length
        own_pad = None if key_pad is None else key_pad[:, past:]
        out = self.self_attn(h, h, self.self_attention_mask(h.shape[1], 0, own_pad, h.device))[0]
        cache.append(
            self.self_attn.project_heads(self.self_attn.w_k, h),
            self.self_attn.project_heads(self.self_attn.w_v, h),
        )
        return out


# ---------------------------------------------------------------- positions and caches


class OffsetBugLM(DecoderOnlyLM):
    """Bug: incremental steps ignore the cache position (every step's tokens get positions from 0)."""

    def embed_ids(self, ids: Tensor, offset: int = 0) -> Tensor:
        return super().embed_ids(ids, 0)


class OffsetBugEncDec(EncoderDecoder):
    """Bug: incremental decoder steps ignore the cache position."""

    def embed_target(self, tgt: Tensor, offset: int = 0) -> Tensor:
        return super().embed_target(tgt, 0)


class RecomputeLM(DecoderOnlyLM):
    """Bug (of the caching idea): each step recomputes queries for the whole prefix instead of reusing K/V."""

    history: dict[int, Tensor]

    def step(self, ids_chunk, cache, pad_mask_chunk=None):
        store = self.__dict__.setdefault("history", {})
        ids = torch.cat([store[id(cache)], ids_chunk], dim=1) if id(cache) in store else ids_chunk
        store[id(cache)] = ids
        super().step(ids_chunk, cache, pad_mask_chunk)  # keeps the cache in step
        return self.forward(ids)[:, -ids_chunk.shape[1] :]


class RecomputeCrossLayer(DecoderLayer):
    """Bug: cross-attention re-projects the memory to K/V at every step (the cache slot is ignored)."""

    def cross_attention(self, h, memory, mem_pad, cache, layer_index):
        return super().cross_attention(h, memory, mem_pad, None, layer_index)


class SharedCrossKVLayer(DecoderLayer):
    """Bug: every layer reuses layer 0's cross-attention K/V (as if the encoder emitted one K/V pair)."""

    def cross_attention(self, h, memory, mem_pad, cache, layer_index):
        return super().cross_attention(h, memory, mem_pad, cache, 0)


# ---------------------------------------------------------------- padding and batches


class IgnoresPaddingLM(DecoderOnlyLM):
    """Bug: the padding mask is dropped; real tokens attend to the pad slots."""

    def forward(self, ids, pad_mask=None):
        return super().forward(ids, None)


class IgnoresSourcePaddingEncDec(EncoderDecoder):
    """Bug: the source padding is not applied inside the encoder (cross-attention still hides it)."""

    def encode(self, src, src_pad=None):
        return super().encode(src, None)


class PaddingLeakLM(DecoderOnlyLM):
    """Bug: a slot padded in any sample is hidden in every sample (padding leaks across the batch)."""

    def forward(self, ids, pad_mask=None):
        if pad_mask is not None:
            pad_mask = pad_mask.all(dim=0, keepdim=True).expand_as(pad_mask)
        return super().forward(ids, pad_mask)


class AlwaysOnDropout(nn.Module):
    """Bug: dropout that ignores ``eval()``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, training=True)


def with_dropout_always_on(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Dropout`` in ``model`` by ``AlwaysOnDropout`` (in place); returns the model."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Dropout):
                setattr(module, child_name, AlwaysOnDropout(child.p))
    return model


# ---------------------------------------------------------------- encoder and memory


class PooledEncoder(Encoder):
    """Bug: the encoder summarises the sentence into one vector, repeated at every position."""

    def forward(self, x, pad_mask=None):
        out = super().forward(x, pad_mask)
        return out.mean(dim=1, keepdim=True).expand_as(out)


class UnchainedEncoder(Encoder):
    """Bug: every layer reads the embeddings (not the previous layer); the last layer's output is returned."""

    def forward(self, x, pad_mask=None):
        out = x
        for layer in self.layers:
            out = layer(x, pad_mask)
        return out if self.final_norm is None else self.final_norm(out)


class FirstLayerMemoryEncDec(EncoderDecoder):
    """Bug: the decoder cross-attends to the first encoder layer's output instead of the last."""

    def encode(self, src, src_pad=None):
        h = self.encoder.layers[0](self.embed_source(src), src_pad)
        return h if self.encoder.final_norm is None else self.encoder.final_norm(h)


class SourceLengthEncDec(EncoderDecoder):
    """Bug: the output length follows the source (target truncated or padded to the source length)."""

    def decode(self, tgt, memory, src_pad=None, tgt_pad=None):
        s = memory.shape[1]
        tgt = tgt[:, :s] if tgt.shape[1] >= s else F.pad(tgt, (0, s - tgt.shape[1]), value=self.config.pad_id)
        return super().decode(tgt, memory, src_pad, None)

    def forward(self, src, tgt, src_pad=None, tgt_pad=None):
        return self.decode(tgt, self.encode(src, src_pad), src_pad, tgt_pad)


# ---------------------------------------------------------------- decoder layer wiring


class MemorySelfAttentionLayer(DecoderLayer):
    """Bug (the notes' reading): the decoder's self-attention takes its keys and values from the memory."""

    def forward(self, x, memory, tgt_pad=None, mem_pad=None, cache=None, layer_index=0):
        mem_mask = None if mem_pad is None else key_padding_to_attention_mask(mem_pad)
        placement = self.config.norm_placement

        def self_part(h):
            return self.self_attn(h, memory, mem_mask)[0]

        def cross_part(h):
            return self.cross_attention(h, memory, mem_pad, cache, layer_index)

        x = residual_sublayer(x, self_part, self.norm_1, placement=placement, dropout=self.dropout)
        x = residual_sublayer(x, cross_part, self.norm_2, placement=placement, dropout=self.dropout)
        return residual_sublayer(x, self.ffn, self.norm_3, placement=placement, dropout=self.dropout)


class PreviousStepQueryLayer(DecoderLayer):
    """Bug (the notes' reading): the cross-attention query at t comes from position t - 1's state."""

    def cross_attention(self, h, memory, mem_pad, cache, layer_index):
        previous = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
        return super().cross_attention(previous, memory, mem_pad, cache, layer_index)


class CausalCrossLayer(DecoderLayer):
    """Bug: cross-attention is causally masked (target position i sees memory positions <= i only)."""

    def cross_attention(self, h, memory, mem_pad, cache, layer_index):
        causal = causal_mask(h.shape[1], memory.shape[1], alignment="top-left", device=h.device)
        pad = None if mem_pad is None else key_padding_to_attention_mask(mem_pad)
        return self.cross_attn(h, memory, combine_masks(causal, pad))[0]


class SwappedCrossSourcesLayer(DecoderLayer):
    """Bug: cross-attention takes its queries from the memory and its keys/values from the decoder."""

    def cross_attention(self, h, memory, mem_pad, cache, layer_index):
        return self.cross_attn(memory, h, None)[0]


class NoResidualEncoderLayer(EncoderLayer):
    """Bug: the sublayer output replaces its input (LayerNorm(Sublayer(x)), no residual addition)."""

    def forward(self, x, pad_mask=None):
        mask = None if pad_mask is None else key_padding_to_attention_mask(pad_mask)
        placement = self.config.norm_placement
        x = residual_sublayer(
            x, lambda h: self.self_attn(h, h, mask)[0] - h, self.norm_1, placement=placement
        )
        return residual_sublayer(x, lambda h: self.ffn(h) - h, self.norm_2, placement=placement)


class PreNormEncoderLayer(EncoderLayer):
    """Bug: a layer configured ``post`` computes the ``pre`` form x + Sublayer(LayerNorm(x))."""

    def forward(self, x, pad_mask=None):
        mask = None if pad_mask is None else key_padding_to_attention_mask(pad_mask)
        x = residual_sublayer(x, lambda h: self.self_attn(h, h, mask)[0], self.norm_1, placement="pre")
        return residual_sublayer(x, self.ffn, self.norm_2, placement="pre")


# ---------------------------------------------------------------- positions limit


class WrappingPositionsLM(DecoderOnlyLM):
    """Bug: learned positions wrap around past ``max_len`` instead of being rejected."""

    def embed_ids(self, ids: Tensor, offset: int = 0) -> Tensor:
        assert self.pos_embed is not None
        index = torch.arange(offset, offset + ids.shape[1], device=ids.device) % self.config.max_len
        x = self.embed(ids) + self.pos_embed.weight[index]
        return self.dropout(x)


# ---------------------------------------------------------------- generation


@torch.no_grad()
def generate_lm_without_context(
    model, prompt, *, max_new_tokens, temperature=0.0, eos_id=None, generator=None, use_cache=True
):
    """Bug: each step feeds only the last token (the model never sees the earlier ones)."""
    ids = prompt
    for _ in range(max_new_tokens):
        logits = model(ids[:, -1:])[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids


@torch.no_grad()
def generate_lm_drops_prompt(
    model, prompt, *, max_new_tokens, temperature=0.0, eos_id=None, generator=None, use_cache=True
):
    """Bug: returns only the new tokens, not the prompt they continue."""
    from transformer_conformance.reference.generation import generate_lm

    out = generate_lm(
        model,
        prompt,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        eos_id=eos_id,
        generator=generator,
        use_cache=use_cache,
    )
    return out[:, prompt.shape[1] :]


@torch.no_grad()
def generate_encdec_from_pad(model, src, *, max_len, temperature=0.0, generator=None, use_cache=True):
    """Bug: decoding starts from the pad token instead of BOS."""
    memory = model.encode(src)
    ys = torch.full((src.shape[0], 1), model.config.pad_id, dtype=src.dtype, device=src.device)
    for _ in range(max_len):
        logits = model.decode(ys, memory)[:, -1]
        ys = torch.cat([ys, logits.argmax(-1, keepdim=True)], dim=1)
    return ys


@torch.no_grad()
def generate_encdec_ignores_eos(model, src, *, max_len, temperature=0.0, generator=None, use_cache=True):
    """Bug: keeps generating after EOS (no per-sequence stop, no pad fill)."""
    from transformer_conformance.reference.sampling import sample_next

    memory = model.encode(src)
    ys = torch.full((src.shape[0], 1), model.config.bos_id, dtype=src.dtype, device=src.device)
    for _ in range(max_len):
        logits = model.decode(ys, memory)[:, -1]
        chosen = sample_next(logits, temperature=temperature, generator=generator)
        ys = torch.cat([ys, chosen[:, None]], dim=1)
    return ys
