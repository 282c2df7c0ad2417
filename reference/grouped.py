"""Attention variants on projected heads: grouped-query/multi-query heads, sliding windows, score bias,
a scale override and logit soft-capping.

Grouped-query attention (GQA): ``num_heads`` query heads share ``num_kv_heads`` key/value heads
(``num_kv_heads`` divides ``num_heads``; group size ``g = num_heads / num_kv_heads``); multi-query
attention (MQA) is ``num_kv_heads == 1``. The query-to-KV-head mapping is declared:

- ``contiguous`` (torch SDPA's ``enable_gqa``, Hugging Face ``repeat_kv``): query head ``h`` reads KV
  head ``h // g``, i.e. each KV head is repeated ``g`` times in place;
- ``tiled``: query head ``h`` reads KV head ``h % num_kv_heads`` (the KV heads are tiled ``g`` times).

Sliding window ``w`` (in absolute positions, i.e. cache slots): query position ``i`` sees key position
``j`` iff ``i - w < j <= i``: itself and the ``w - 1`` keys before it. This is Hugging Face's
``sliding_window_overlay`` on top of the causal mask (``kv_idx > q_idx - w``), Mistral's
``sliding_window`` and FlashAttention's ``window_size = (w - 1, 0)``; note that the flex-attention
tutorial's ``q_idx - kv_idx <= w`` sees ``w + 1`` keys. With a cache the positions are absolute
(query ``i`` of a chunk after ``past`` cached tokens is at ``past + i``, the bottom-right alignment),
so the window moves with the decoded position and a cache may drop keys older than ``w - 1`` steps.

Scores: ``s = scale * q . k`` (``scale`` defaults to ``1/sqrt(d_k)``; T5 uses 1), then soft-capping
``s -> cap * tanh(s / cap)`` when ``softcap`` is set (Gemma 2), then the additive ``bias`` (ALiBi or
relative buckets), then the keep-mask and the softmax of reference.attention's policy.
"""

import math
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from transformer_conformance.reference.attention import compute_dtype, masked_softmax, weighted_values
from transformer_conformance.reference.checking import checked, require, require_floating, require_same_dtype

KVMapping = Literal["contiguous", "tiled"]
KV_MAPPINGS: tuple[str, ...] = ("contiguous", "tiled")


@checked
def repeat_kv(
    x: Float[Tensor, "batch kv_heads length d"], num_heads: int, mapping: KVMapping = "contiguous"
) -> Float[Tensor, "batch {num_heads} length d"]:
    """Expand KV heads to one per query head under the declared ``mapping``.

    Claims: gqa.repeat-equivalence, gqa.mqa-one-group.
    """
    kv = x.shape[1]
    require(mapping in KV_MAPPINGS, "mapping", f"one of {KV_MAPPINGS}", repr(mapping))
    require(num_heads % kv == 0, "num_heads", f"a multiple of num_kv_heads = {kv}", num_heads)
    group = num_heads // kv
    if mapping == "contiguous":
        return x.repeat_interleave(group, dim=1)
    return x.repeat(1, group, 1, 1)


@checked
def window_keep(
    query_positions: Int[Tensor, " num_q"], key_positions: Int[Tensor, " num_k"], window: int | None = None
) -> Bool[Tensor, "num_q num_k"]:
    """Causal keep-mask on absolute positions, limited to ``i - window < j <= i`` when ``window`` is set.

    Claims: window.blind-outside, window.full-when-wide, mask.causal.future-blind.
    """
    q, k = query_positions[:, None], key_positions[None, :]
    keep = k <= q
    if window is not None:
        require(window > 0, "window", "a positive window size", window)
        keep = keep & (k > q - window)
    return keep


@checked
def grouped_attention(
    q: Float[Tensor, "batch heads num_q d_k"],
    k: Float[Tensor, "batch kv_heads num_k d_k"],
    v: Float[Tensor, "batch kv_heads num_k d_v"],
    keep: Bool[Tensor, "..."] | None = None,
    bias: Float[Tensor, "..."] | None = None,
    *,
    mapping: KVMapping = "contiguous",
    scale: float | None = None,
    softcap: float | None = None,
) -> tuple[Float[Tensor, "batch heads num_q d_v"], Float[Tensor, "batch heads num_q num_k"]]:
    """Attention of ``heads`` query heads over ``kv_heads`` shared KV heads; returns output and weights.

    ``keep`` (True = may attend) and ``bias`` broadcast to ``[batch, heads, num_q, num_k]``.

    Claims: gqa.repeat-equivalence, gqa.mqa-one-group, scoring.scale-override, scoring.softcap,
    window.blind-outside, alibi.distance-only, relbias.distance-only.
    """
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        require_floating(name, tensor)
    require_same_dtype(q=q, k=k, v=v)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    require(math.isfinite(scale) and scale > 0, "scale", "a finite positive number", scale)
    require(softcap is None or softcap > 0, "softcap", "a positive cap or None", softcap)
    heads = q.shape[1]
    work = compute_dtype(q.dtype)
    k_all = repeat_kv(k, heads, mapping).to(work)
    v_all = repeat_kv(v, heads, mapping).to(work)
    scores = (q.to(work) * scale) @ k_all.transpose(-2, -1)
    if softcap is not None:
        scores = softcap * torch.tanh(scores / softcap)
    if bias is not None:
        scores = scores + bias.to(work)
    full_keep = None if keep is None else keep.expand(scores.shape)
    weights = masked_softmax(scores, full_keep)
    out = weighted_values(weights, v_all, full_keep)
    return out.to(q.dtype), weights.to(q.dtype)
