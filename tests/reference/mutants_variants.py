"""Planted-bug versions of the architecture variants (beyond the notes), one function or class per bug.

Each keeps the reference's signature and changes one thing, the way real ports go wrong. The tests
run the same property check on the reference (must pass) and on the mutant (must be rejected).
Model-level mutants are subclasses (or re-classed layers) of ``VariantLM`` with the same parameters.
"""

import math

import torch

from transformer_conformance.reference import rotary
from transformer_conformance.reference.gated_ffn import FeedForward, activate
from transformer_conformance.reference.grouped import grouped_attention, repeat_kv
from transformer_conformance.reference.relative_bias import RelativePositionBias, relative_bucket
from transformer_conformance.reference.rmsnorm import rms_norm
from transformer_conformance.reference.sublayer import residual_sublayer
from transformer_conformance.reference.variant_lm import VariantBlock, VariantLM

# --------------------------------------------------------------------------- rotary


def _rotate(x, positions, freqs, first, second, sign=1.0):
    pos = positions if positions.dim() == 2 else positions.unsqueeze(0)
    angles = pos.to(torch.float64)[..., None] * freqs
    cos, sin = torch.cos(angles)[:, None].to(x.dtype), torch.sin(angles)[:, None].to(x.dtype)
    out = x.clone()
    a, b = x[..., first], x[..., second]
    out[..., first] = a * cos - b * sin
    out[..., second] = b * cos + sign * a * sin
    return out


def rotary_wrong_pairing(x, positions, *, theta=10000.0, fraction=1.0, layout="half"):
    """Bug: pairs columns in the other layout than declared (interleaved for half and vice versa)."""
    other = "interleaved" if layout == "half" else "half"
    return rotary.apply_rotary(x, positions, theta=theta, fraction=fraction, layout=other)


def rotary_frequency_missing_two(x, positions, *, theta=10000.0, fraction=1.0, layout="half"):
    """Bug: frequencies ``theta^(-i/d_rot)`` (the factor 2 of ``2i`` dropped)."""
    d_rot = rotary.rotary_width(x.shape[-1], fraction)
    freqs = torch.pow(
        torch.tensor(theta, dtype=torch.float64), -torch.arange(d_rot // 2, dtype=torch.float64) / d_rot
    )
    first, second = rotary.pair_columns(d_rot, layout)
    return _rotate(x, positions, freqs, first, second)


def rotary_frequency_head_width(x, positions, *, theta=10000.0, fraction=1.0, layout="half"):
    """Bug: partial rotary with frequencies over the head width, ``theta^(-2i/d_head)``, not ``d_rot``."""
    d_rot = rotary.rotary_width(x.shape[-1], fraction)
    freqs = rotary.rotary_frequencies(x.shape[-1], theta)[: d_rot // 2]
    first, second = rotary.pair_columns(d_rot, layout)
    return _rotate(x, positions, freqs, first, second)


def rotary_sign_error(x, positions, *, theta=10000.0, fraction=1.0, layout="half"):
    """Bug: the second member gets ``b cos - a sin`` (a reflection-like map, not a rotation)."""
    d_rot = rotary.rotary_width(x.shape[-1], fraction)
    first, second = rotary.pair_columns(d_rot, layout)
    return _rotate(x, positions, rotary.rotary_frequencies(d_rot, theta), first, second, sign=-1.0)


def rotary_ignores_positions(x, positions, *, theta=10000.0, fraction=1.0, layout="half"):
    """Bug: every token rotated as if at position 0 (the positions never reach the rotation)."""
    return rotary.apply_rotary(x, torch.zeros_like(positions), theta=theta, fraction=fraction, layout=layout)


class RotaryRestartsLM(VariantLM):
    """Bug: rotary applied after the cache: each call counts positions from 0 again (ids restart)."""

    def position_ids(self, real, past, cache):
        return super().position_ids(real, 0, None)


# --------------------------------------------------------------------------- ALiBi and relative buckets


def alibi_slopes_geometric_always(num_heads):
    """Bug: ``2^(-8k/n)`` for every head count, also when ``n`` is not a power of two."""
    return torch.tensor([2.0 ** (-8.0 * k / num_heads) for k in range(1, num_heads + 1)], dtype=torch.float64)


def alibi_bias_sum(slopes, query_positions, key_positions):
    """Bug: sign slip, ``-slope * (i + j)`` instead of ``-slope * (i - j)``."""
    total = query_positions[:, None].to(slopes.dtype) + key_positions[None, :].to(slopes.dtype)
    return -slopes[:, None, None] * total[None]


def alibi_bias_zero(slopes, query_positions, key_positions):
    """Bug: the bias is never added (all zeros)."""
    return torch.zeros(slopes.shape[0], query_positions.shape[0], key_positions.shape[0], dtype=slopes.dtype)


def relative_bucket_uncapped(relative, *, bidirectional, num_buckets=32, max_distance=128):
    """Bug: large distances are not capped at the last bucket (indices run past ``num_buckets``)."""
    n = num_buckets // 2 if bidirectional else num_buckets
    exact = n // 2
    offset = torch.where(relative > 0, n, 0) if bidirectional else torch.zeros_like(relative)
    distance = relative.abs() if bidirectional else (-relative).clamp(min=0)
    scaled = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    large = exact + (scaled * (n - exact)).to(torch.int64)
    return offset + torch.where(distance < exact, distance, large)


def relative_bucket_linear(relative, *, bidirectional, num_buckets=32, max_distance=128):
    """Bug: linear instead of log spacing beyond the exact range."""
    n = num_buckets // 2 if bidirectional else num_buckets
    exact = n // 2
    offset = torch.where(relative > 0, n, 0) if bidirectional else torch.zeros_like(relative)
    distance = relative.abs() if bidirectional else (-relative).clamp(min=0)
    large = (exact + (distance - exact) * (n - exact) // (max_distance - exact)).clamp(max=n - 1)
    return offset + torch.where(distance < exact, distance, large)


class AbsoluteKeyRelativeBias(RelativePositionBias):
    """Bug: looks up the bucket of minus the key's absolute position instead of ``j - i``."""

    def forward(self, query_positions, key_positions):
        relative = -key_positions[None, :].expand(query_positions.shape[0], -1)
        buckets = relative_bucket(
            relative,
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )
        return self.weight[buckets].permute(2, 0, 1)


# --------------------------------------------------------------------------- norms and FFN


def rms_norm_centered(x, weight=None, eps=1e-6, *, offset=False):
    """Bug: subtracts the mean first (a LayerNorm without bias, not an RMSNorm)."""
    return rms_norm(x - x.mean(dim=-1, keepdim=True), weight, eps, offset=offset)


def rms_norm_ignores_offset(x, weight=None, eps=1e-6, *, offset=False):
    """Bug: the Gemma ``1 + w`` gain applied as plain ``w``."""
    return rms_norm(x, weight, eps, offset=False)


class SwappedGateFFN(FeedForward):
    """Bug: the activation is applied to the up projection and the gate stays linear (gate/up swapped)."""

    def forward(self, x):
        return self.w_down(self.w_gate(x) * activate(self.w_up(x), self.activation))


def activate_exact_for_tanh(x, name):
    """Bug: ``gelu_tanh`` computed as the exact erf GELU."""
    return activate(x, "gelu" if name == "gelu_tanh" else name)


# --------------------------------------------------------------------------- attention variants


def repeat_kv_tiled(x, num_heads, mapping="contiguous"):
    """Bug: KV heads tiled (``h % kv``) whatever mapping is declared."""
    return repeat_kv(x, num_heads, "tiled")


def repeat_kv_first_head(x, num_heads, mapping="contiguous"):
    """Bug: every query head reads KV head 0 (MQA whatever ``num_kv_heads`` says)."""
    return x[:, :1].expand(x.shape[0], num_heads, *x.shape[2:])


def window_keep_off_by_one(query_positions, key_positions, window=None):
    """Bug: ``i - w <= j <= i`` (sees ``w + 1`` keys, the flex-attention tutorial's convention)."""
    q, k = query_positions[:, None], key_positions[None, :]
    keep = k <= q
    if window is not None:
        keep = keep & (k >= q - window)
    return keep


def window_keep_symmetric(query_positions, key_positions, window=None):
    """Bug: a two-sided band ``|i - j| < w`` that forgets causality."""
    q, k = query_positions[:, None], key_positions[None, :]
    if window is None:
        return k <= q
    return (q - k).abs() < window


def attention_ignores_scale(q, k, v, keep=None, bias=None, *, mapping="contiguous", scale=None, softcap=None):
    """Bug: the scale override is ignored (always ``1/sqrt(d_k)``)."""
    return grouped_attention(q, k, v, keep, bias, mapping=mapping, scale=None, softcap=softcap)


def attention_clamp_cap(q, k, v, keep=None, bias=None, *, mapping="contiguous", scale=None, softcap=None):
    """Bug: soft-capping done as a hard clamp of the scores to ``[-cap, cap]``."""
    if softcap is None:
        return grouped_attention(q, k, v, keep, bias, mapping=mapping, scale=scale)
    s = (1.0 / math.sqrt(q.shape[-1])) if scale is None else scale
    scores = ((q * s) @ repeat_kv(k, q.shape[1], mapping).transpose(-2, -1)).clamp(-softcap, softcap)
    if bias is not None:
        scores = scores + bias
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ repeat_kv(v, q.shape[1], mapping), weights


# --------------------------------------------------------------------------- blocks and models


class SequentialInsteadOfParallelBlock(VariantBlock):
    """Bug: a parallel block computed sequentially (the FFN sees the attention's output)."""

    def forward(self, x, position_ids, keep, bias, cache):
        def attend(h):
            return self.attn(h, position_ids, keep, bias, cache)

        norm_2 = self.norm_2 if self.norm_2 is not None else self.norm_1
        x = residual_sublayer(x, attend, self.norm_1, placement="pre")
        return residual_sublayer(x, self.ffn, norm_2, placement="pre")


class AlwaysPreNormBlock(VariantBlock):
    """Bug: a post-norm configuration run with pre-norm sublayers (the default is not the notes')."""

    def forward(self, x, position_ids, keep, bias, cache):
        def attend(h):
            return self.attn(h, position_ids, keep, bias, cache)

        x = residual_sublayer(x, attend, self.norm_1, placement="pre")
        return residual_sublayer(x, self.ffn, self.norm_2, placement="pre")


class MissingFinalNormLM(VariantLM):
    """Bug: a pre-norm stack that never applies its final norm (the module exists, the call is missing)."""

    def head(self, x):
        return self.lm_head(x)


class WindowCacheOffByOneLM(VariantLM):
    """Bug: the windowed cache keeps ``w - 2`` positions, one too few."""

    def new_cache(self, batch, *, drop_outside_window=True):
        cache = super().new_cache(batch, drop_outside_window=drop_outside_window)
        if cache.keep_last is not None:
            cache.keep_last -= 1
        return cache


class SlotPositionIdsLM(VariantLM):
    """Bug: position ids are always the slots, even where ``from_first_token`` is declared."""

    def position_ids(self, real, past, cache):
        b, n = real.shape
        return torch.arange(past, past + n, device=real.device).expand(b, n)


def swap_blocks(model, cls):
    """Re-class every layer of ``model.layers`` (parameters kept, behaviour replaced)."""
    for layer in model.layers:
        layer.__class__ = cls


def gqa_tiled_attention(q, k, v, keep=None, bias=None, *, mapping="contiguous", scale=None, softcap=None):
    """Bug: GQA heads tiled (query head ``h`` reads KV head ``h % kv``) where contiguous is declared."""
    heads = q.shape[1]
    k_all, v_all = repeat_kv_tiled(k, heads), repeat_kv_tiled(v, heads)
    return grouped_attention(q, k_all, v_all, keep, bias, scale=scale, softcap=softcap)


def gqa_first_head_attention(
    q, k, v, keep=None, bias=None, *, mapping="contiguous", scale=None, softcap=None
):
    """Bug: every query head reads KV head 0."""
    heads = q.shape[1]
    k_all, v_all = repeat_kv_first_head(k, heads), repeat_kv_first_head(v, heads)
    return grouped_attention(q, k_all, v_all, keep, bias, scale=scale, softcap=softcap)
