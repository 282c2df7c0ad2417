"""Planted-bug implementations of the attention family, used to show that the property checks have teeth.

Each mutant has the signature of the reference function it imitates and differs from it by one
deliberate mistake (named in its docstring). The tests run the same property check on the reference
(which must pass) and on the mutant (which must be rejected).
"""

import math

import torch
from torch import Tensor, nn

from transformer_conformance.reference.cache import LayerKVCache
from transformer_conformance.reference.multihead import MultiHeadAttention, merge_heads


def _keep(mask: Tensor | None, like: Tensor) -> Tensor:
    """Boolean keep-mask of ``mask`` (a float mask keeps its non-``-inf`` entries), expanded like ``like``."""
    if mask is None:
        return torch.ones(like.shape, dtype=torch.bool, device=like.device)
    if mask.dtype != torch.bool:
        mask = mask != float("-inf")
    return mask.expand(like.shape)


def _scores(q: Tensor, k: Tensor, scale: float | None) -> Tensor:
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return (q @ k.transpose(-2, -1)) * scale


def plain_softmax_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: textbook ``masked_fill(-inf)`` + ``torch.softmax``; a fully masked row becomes NaN."""
    s = _scores(q, k, scale)
    keep = _keep(mask, s)
    w = torch.softmax(s.masked_fill(~keep, float("-inf")), dim=-1)
    return w @ v, w


def uniform_fully_masked(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: masks with a fill of -1e9; a fully masked row becomes uniform instead of zero."""
    s = _scores(q, k, scale)
    keep = _keep(mask, s)
    w = torch.softmax(s.masked_fill(~keep, -1e9), dim=-1)
    return w @ v, w


def finite_negative_mask(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: adds a finite -1e4 for masked entries (no ``where``); huge scores beat it."""
    s = _scores(q, k, scale)
    keep = _keep(mask, s)
    s = s + (~keep).to(s.dtype) * -1e4
    w = torch.softmax(s - s.amax(-1, keepdim=True), dim=-1)
    return w @ v, w


def moderate_negative_mask(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: fills masked scores with -20: masked weights are small but not exactly 0."""
    s = _scores(q, k, scale)
    keep = _keep(mask, s)
    w = torch.softmax(s.masked_fill(~keep, -20.0), dim=-1)
    return w @ v, w


def zero_after_softmax(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: softmax over every key, then zero the masked weights (rows no longer sum to one)."""
    s = _scores(q, k, scale)
    keep = _keep(mask, s)
    w = torch.softmax(s, dim=-1) * keep
    return w @ v, w


def ignores_mask(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: the mask argument is silently ignored."""
    w = torch.softmax(_scores(q, k, scale), dim=-1)
    return w @ v, w


def no_scale(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: forgets the ``1/sqrt(d_k)`` factor (uses ``scale`` only when given explicitly)."""
    return plain_softmax_attention(q, k, v, mask, scale=1.0 if scale is None else scale)


def scale_by_dk(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: divides by ``d_k`` instead of ``sqrt(d_k)``."""
    return plain_softmax_attention(q, k, v, mask, scale=1.0 / q.shape[-1] if scale is None else scale)


def cosine_scores(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: scores are cosine similarities (bounded), not dot products."""
    qn = q / q.norm(dim=-1, keepdim=True)
    kn = k / k.norm(dim=-1, keepdim=True)
    return plain_softmax_attention(qn, kn, v, mask, scale=1.0)


def column_softmax(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: normalises over queries (the notes' column layout applied to a [num_q, num_k] matrix)."""
    w = torch.softmax(_scores(q, k, scale), dim=-2)
    return w @ v, w


def additive_read_as_boolean(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: a float mask is read as boolean (non-zero = keep), which inverts the 0/-inf polarity."""
    if mask is not None and mask.dtype != torch.bool:
        mask = mask != 0
    return plain_softmax_attention(q, k, v, mask, scale=scale)


def nan_leak(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: correct weights (exact zeros via ``where``) but ``weights @ v`` with raw values: 0 * NaN = NaN."""
    s = _scores(q, k, scale)
    keep = _keep(mask, s)
    s = torch.where(keep, s, torch.full_like(s, float("-inf")))
    w = torch.softmax(s, dim=-1)
    w = torch.where(keep.any(-1, keepdim=True), w, torch.zeros_like(w))
    return w @ v, w


def no_row_max_in_input_dtype(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: ``exp(s) / sum exp(s)`` without subtracting the row max, in the input dtype."""
    s = _scores(q, k, scale)
    keep = _keep(mask, s)
    e = torch.exp(s) * keep
    w = e / e.sum(-1, keepdim=True)
    return w @ v, w


def batch_leak(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: keys are shifted by the batch mean (like a stray batch statistic), so samples interact."""
    return plain_softmax_attention(q, k + 0.5 * k.mean(dim=0, keepdim=True), v, mask, scale=scale)


def relative_position_bias(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug (for the order-blindness contract): a hidden distance penalty makes attention see token order."""
    s = _scores(q, k, scale)
    i = torch.arange(q.shape[-2], device=q.device).unsqueeze(-1)
    j = torch.arange(k.shape[-2], device=q.device).unsqueeze(0)
    s = s - 0.5 * (i - j).abs().to(s.dtype)
    keep = _keep(mask, s)
    w = torch.softmax(s.masked_fill(~keep, float("-inf")), dim=-1)
    return w @ v, w


def first_query_only_weights(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: returns only the first query's weights (a [*, 1, num_k] pattern instead of num_q x num_k)."""
    out, w = plain_softmax_attention(q, k, v, mask, scale=scale)
    return out, w[..., :1, :]


# --- masks ---------------------------------------------------------------------------------------


def hard_lookup(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: a hard dictionary lookup: each query returns the value of its best-scoring key (argmax)."""
    s = _scores(q, k, scale).masked_fill(~_keep(mask, _scores(q, k, scale)), float("-inf"))
    w = torch.nn.functional.one_hot(s.argmax(-1), s.shape[-1]).to(v.dtype)
    return w @ v, w


def causal_mask_strict(num_q: int, num_k: int, *, alignment: str = "bottom-right", device=None) -> Tensor:
    """Bug: strictly lower triangular (a position may not see itself)."""
    offset = num_k - num_q if alignment == "bottom-right" else 0
    i = torch.arange(num_q, device=device).unsqueeze(-1) + offset
    return torch.arange(num_k, device=device).unsqueeze(0) < i


def causal_mask_upper(num_q: int, num_k: int, *, alignment: str = "bottom-right", device=None) -> Tensor:
    """Bug: keeps the upper triangle (the notes' "upper triangular" read as the keep-mask)."""
    offset = num_k - num_q if alignment == "bottom-right" else 0
    i = torch.arange(num_q, device=device).unsqueeze(-1) + offset
    return torch.arange(num_k, device=device).unsqueeze(0) >= i


def causal_mask_always_top_left(
    num_q: int, num_k: int, *, alignment: str = "bottom-right", device=None
) -> Tensor:
    """Bug: ignores ``alignment``; always top-left (wrong for a KV cache)."""
    i = torch.arange(num_q, device=device).unsqueeze(-1)
    return torch.arange(num_k, device=device).unsqueeze(0) <= i


def padding_left_as_right(lengths: Tensor, max_len: int, *, side: str = "right") -> Tensor:
    """Bug: ignores ``side``; always right padding."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(-1)


def split_heads_no_transpose(x: Tensor, num_heads: int) -> Tensor:
    """Bug: ``[b, l, h*d] -> [b, h, l, d]`` by a bare reshape (heads take interleaved positions)."""
    b, length, width = x.shape
    return x.reshape(b, num_heads, length, width // num_heads)


def merge_heads_no_transpose(x: Tensor) -> Tensor:
    """Bug: the inverse bare reshape (round-trips, but head j is not columns j*d:(j+1)*d)."""
    b, h, length, d = x.shape
    return x.reshape(b, length, h * d)


# --- multi-head attention -------------------------------------------------------------------------


class SharedInitMHA(MultiHeadAttention):
    """Bug: W_k and W_v are copies of W_q at initialisation (the notes' "Q, K, V identical")."""

    def __init__(self, d_model: int, num_heads: int, *, bias: bool = True) -> None:
        super().__init__(d_model, num_heads, bias=bias)
        with torch.no_grad():
            for layer in (self.w_k, self.w_v):
                layer.weight.copy_(self.w_q.weight)
                if bias:
                    layer.bias.copy_(self.w_q.bias)


class NoTransposeSplitMHA(MultiHeadAttention):
    """Bug: splits heads with a bare reshape ``[b, l, h*d] -> [b, h, l, d]`` (mixes positions and heads)."""

    def project_heads(self, layer: nn.Linear, x: Tensor) -> Tensor:
        y: Tensor = layer(x)
        b, length, _ = y.shape
        return y.reshape(b, self.num_heads, length, self.d_head)


class DModelScaleMHA(MultiHeadAttention):
    """Bug: scales scores by ``1/sqrt(d_model)`` instead of ``1/sqrt(d_head)``."""

    def forward(self, x_q, x_kv, mask=None, cache=None):
        q = self.project_heads(self.w_q, x_q)
        k = self.project_heads(self.w_k, x_kv)
        v = self.project_heads(self.w_v, x_kv)
        out, w = plain_softmax_attention(q, k, v, mask, scale=1.0 / math.sqrt(self.d_model))
        return self.w_o(merge_heads(out)), w


class RowSliceContributionsMHA(MultiHeadAttention):
    """Bug: per-head contributions use rows of ``W_o`` instead of its columns."""

    def head_contributions(self, x_q, x_kv, mask=None):
        outputs, _ = self.per_head_outputs(x_q, x_kv, mask)
        rows = [self.w_o.weight[self.head_slice(j), :] for j in range(self.num_heads)]
        return torch.stack([out @ row for out, row in zip(outputs, rows)], dim=1)


class WideHeadsMHA(nn.Module):
    """Bug (the notes' model): every head gets its own full ``d_model x d_model`` Q/K/V matrices."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.d_model, self.d_head = num_heads, d_model, d_model // num_heads
        self.w_q = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(num_heads))
        self.w_k = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(num_heads))
        self.w_v = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(num_heads))
        self.w_o = nn.Linear(num_heads * d_model, d_model)

    def value_path(self, head: int) -> Tensor:
        """The value path matrix ``W_o_j W_v_j`` (d_model x d_model) of head ``head``."""
        cols = slice(head * self.d_model, (head + 1) * self.d_model)
        return self.w_o.weight[:, cols] @ self.w_v[head].weight


class SharedHeadBlockMHA(MultiHeadAttention):
    """Bug: every head reuses head 0's row block of ``w_q/w_k/w_v`` (3 learnable matrices, not 3h).

    The parameter count is unchanged; the other heads' blocks never reach the output.
    """

    def project_heads(self, layer: nn.Linear, x: Tensor) -> Tensor:
        first = self.head_projection(layer, 0, x)  # [b, l, d_head]
        return first[:, None].expand(x.shape[0], self.num_heads, x.shape[1], self.d_head)


class SummedHeadsMHA(MultiHeadAttention):
    """Bug: head outputs are summed (``[b, l, d_head]``) and tiled to ``d_model`` instead of concatenated."""

    def forward(self, x_q, x_kv, mask=None, cache=None):
        q = self.project_heads(self.w_q, x_q)
        k = self.project_heads(self.w_k, x_kv)
        v = self.project_heads(self.w_v, x_kv)
        heads, w = plain_softmax_attention(q, k, v, mask)
        summed = heads.sum(dim=1)  # [b, l, d_head]
        return self.w_o(summed.repeat(1, 1, self.num_heads)), w


class ReversedHeadsMHA(MultiHeadAttention):
    """Bug: heads are concatenated in reverse order (head h-1's columns first)."""

    def forward(self, x_q, x_kv, mask=None, cache=None):
        q = self.project_heads(self.w_q, x_q)
        k = self.project_heads(self.w_k, x_kv)
        v = self.project_heads(self.w_v, x_kv)
        heads, w = plain_softmax_attention(q, k, v, mask)
        return self.w_o(merge_heads(heads.flip(1))), w


class QueryForAllMHA(MultiHeadAttention):
    """Bug: "self-attention means Q = K = V": keys and values reuse the query projection ``w_q``."""

    def forward(self, x_q, x_kv, mask=None, cache=None):
        q = self.project_heads(self.w_q, x_q)
        k = self.project_heads(self.w_q, x_kv)
        heads, w = plain_softmax_attention(q, k, k, mask)
        return self.w_o(merge_heads(heads)), w


class PositionalMemoryMHA(MultiHeadAttention):
    """Bug: adds a position ramp to the keys, so cross-attention depends on the memory order."""

    def forward(self, x_q, x_kv, mask=None, cache=None):
        ramp = torch.linspace(0.0, 1.0, x_kv.shape[1], dtype=x_kv.dtype, device=x_kv.device)
        return super().forward(x_q, x_kv + ramp[None, :, None], mask, cache)


class OverwritingCache(LayerKVCache):
    """Bug: keeps only the newest K/V instead of appending."""

    def append(self, k_new, v_new):
        self.k, self.v = k_new, v_new
        return k_new, v_new


def lenient_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale=None):
    """Bug: no input validation; mismatched widths and counts are silently truncated, bad masks fail deep
    inside torch with an unrelated message."""
    d, n = min(q.shape[-1], k.shape[-1]), min(k.shape[-2], v.shape[-2])
    q, k, v = q[..., :d].float(), k[..., :n, :d].float(), v[..., :n, :].float()
    s = _scores(q, k, scale)
    if mask is not None:
        s = s.masked_fill(~mask.bool(), float("-inf"))
    w = torch.softmax(s, dim=-1)
    return w @ v, w
