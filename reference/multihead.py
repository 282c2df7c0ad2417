"""Multi-head attention: fused projections split into heads, attention per head, concat, output matrix.

Three equivalent ways to compute the same layer are provided so tests can compare them:
``forward`` (fused ``d_model x d_model`` projections reshaped into heads), ``forward_per_head``
(explicit per-head row slices of the same weights, one head at a time), and ``head_contributions``
(per-head terms ``head_j @ W_o[:, cols_j]^T`` whose sum plus ``w_o.bias`` is ``forward``'s output).

Incremental decoding: pass a ``LayerKVCache`` as ``cache``; the new keys/values of ``x_kv`` are
appended first and the queries of ``x_q`` attend over all cached positions. The mask is the caller's
business: for ``n`` new queries over ``t`` cached plus new positions pass
``causal_mask(n, t)`` (bottom-right alignment, the default), or ``None`` for a single newest query.
"""

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor, nn

from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.cache import LayerKVCache
from transformer_conformance.reference.checking import checked, require, require_positive


@checked
def split_heads(
    x: Float[Tensor, "batch length hd"], num_heads: int
) -> Float[Tensor, "batch {num_heads} length d"]:
    """``[b, l, h*d] -> [b, h, l, d]``: head ``j`` takes columns ``j*d : (j+1)*d``.

    Claims: mha.split-merge-roundtrip, mha.concat-width.
    """
    require(num_heads > 0, "num_heads", "a positive integer", num_heads)
    width = x.shape[-1]
    require(width % num_heads == 0, "x", f"a last dimension divisible by num_heads = {num_heads}", width)
    b, length, _ = x.shape
    return x.reshape(b, length, num_heads, width // num_heads).transpose(1, 2)


@checked
def merge_heads(x: Float[Tensor, "batch h length d"]) -> Float[Tensor, "batch length h*d"]:
    """``[b, h, l, d] -> [b, l, h*d]``, the inverse of ``split_heads`` (concatenation of heads).

    Claims: mha.split-merge-roundtrip, mha.concat-width.
    """
    b, h, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, h * d)


def head_mask(mask: Tensor | None, head: int) -> Tensor | None:
    """The part of a mask broadcastable to ``[b, h, q, k]`` used by head ``head`` (``[b|1, q|1, k|1]``)."""
    if mask is None:
        return None
    full = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape)) if mask.dim() < 4 else mask
    return full[:, head if full.shape[1] > 1 else 0]


class MultiHeadAttention(nn.Module):
    """Multi-head attention with parameters ``w_q, w_k, w_v, w_o`` (``nn.Linear(d_model, d_model)`` each).

    Each matrix gets ``nn.Linear``'s default initialisation independently, so Q, K and V differ at
    initialisation. ``d_head = d_model // num_heads``; the parameter count ``4 * d_model * (d_model + 1)``
    (with bias) does not depend on ``num_heads``.

    Claims: mha.fused-equals-per-head, mha.concat-width, mha.params-independent-of-heads,
    mha.value-low-rank, attention.qkv-equal-at-init, attention.self.same-input, attention.cross.sources,
    attention.self.equal-qkv-as-stated, mha.output-compresses-as-stated (``w_o`` is square).
    """

    def __init__(self, d_model: int, num_heads: int, *, bias: bool = True) -> None:
        super().__init__()
        require_positive("", [("d_model", d_model), ("num_heads", num_heads)])
        require(d_model % num_heads == 0, "num_heads", f"a divisor of d_model = {d_model}", num_heads)
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_head = d_model // num_heads
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    def project_heads(self, layer: nn.Linear, x: Tensor) -> Tensor:
        """Apply one fused projection and split the result into heads ``[b, h, l, d_head]``."""
        projected: Tensor = layer(x)
        return split_heads(projected, self.num_heads)

    def require_inputs(self, x_q: Tensor, x_kv: Tensor) -> None:
        """Inputs share the parameters' dtype and device (a clear error instead of a matmul failure)."""
        weight = self.w_q.weight
        for name, x in (("x_q", x_q), ("x_kv", x_kv)):
            expected_dtype, expected_device = f"dtype {weight.dtype}", f"device {weight.device}"
            require(x.dtype == weight.dtype, name, f"{expected_dtype} (the module's parameters)", x.dtype)
            require(x.device == weight.device, name, f"{expected_device} (the module's parameters)", x.device)

    @checked
    def forward(
        self,
        x_q: Float[Tensor, "batch num_q {self.d_model}"],
        x_kv: Float[Tensor, "batch num_k {self.d_model}"],
        mask: Bool[Tensor, "..."] | Float[Tensor, "..."] | None = None,
        cache: LayerKVCache | None = None,
    ) -> tuple[
        Float[Tensor, "batch num_q {self.d_model}"], Float[Tensor, "batch {self.num_heads} num_q k_total"]
    ]:
        """Attend from ``x_q`` to ``x_kv`` (self-attention: pass the same tensor twice; cross: the memory).

        ``mask`` broadcasts to ``[b, h, num_q, k_total]`` (True = may attend, or an additive bias). With
        ``cache`` the new K/V are appended before attending, so ``k_total = cache.length + num_k``; the
        caller supplies a bottom-right aligned causal mask (``causal_mask(num_q, k_total)``) when needed.
        Returns the output ``[b, num_q, d_model]`` and the weights ``[b, h, num_q, k_total]``.

        Claims: mha.fused-equals-per-head, mha.shape-preserving, mha.concat-width,
        attention.self.same-input, attention.cross.sources, attention.cross.no-causal-mask,
        kvcache.equals-recompute, kvcache.only-kv.
        """
        self.require_inputs(x_q, x_kv)
        q = self.project_heads(self.w_q, x_q)
        k = self.project_heads(self.w_k, x_kv)
        v = self.project_heads(self.w_v, x_kv)
        if cache is not None:
            k, v = cache.append(k, v)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        out: Tensor = self.w_o(merge_heads(heads))
        return out, weights

    def head_slice(self, head: int) -> slice:
        """Rows of ``w_q/w_k/w_v`` (and columns of ``w_o``) that belong to head ``head``."""
        return slice(head * self.d_head, (head + 1) * self.d_head)

    def head_projection(self, layer: nn.Linear, head: int, x: Tensor) -> Tensor:
        """Head ``head``'s own ``d_model -> d_head`` projection: row slices of ``layer``'s weight and bias."""
        rows = self.head_slice(head)
        bias = None if layer.bias is None else layer.bias[rows]
        return F.linear(x, layer.weight[rows], bias)

    def per_head_outputs(
        self, x_q: Tensor, x_kv: Tensor, mask: Tensor | None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Each head's attention computed separately: ``[b, q, d_head]`` outputs and ``[b, q, k]`` weights."""
        outputs, weights = [], []
        for head in range(self.num_heads):
            q = self.head_projection(self.w_q, head, x_q)
            k = self.head_projection(self.w_k, head, x_kv)
            v = self.head_projection(self.w_v, head, x_kv)
            out, w = scaled_dot_product_attention(q, k, v, head_mask(mask, head))
            outputs.append(out)
            weights.append(w)
        return outputs, weights

    @checked
    def forward_per_head(
        self,
        x_q: Float[Tensor, "batch num_q {self.d_model}"],
        x_kv: Float[Tensor, "batch num_k {self.d_model}"],
        mask: Bool[Tensor, "..."] | Float[Tensor, "..."] | None = None,
    ) -> tuple[
        Float[Tensor, "batch num_q {self.d_model}"], Float[Tensor, "batch {self.num_heads} num_q num_k"]
    ]:
        """Same result as ``forward`` (without a cache), computed head by head with explicit weight slices.

        Claims: mha.fused-equals-per-head, mha.split-merge-roundtrip, mha.concat-width.
        """
        outputs, weights = self.per_head_outputs(x_q, x_kv, mask)
        out: Tensor = self.w_o(torch.cat(outputs, dim=-1))
        return out, torch.stack(weights, dim=1)

    @checked
    def head_contributions(
        self,
        x_q: Float[Tensor, "batch num_q {self.d_model}"],
        x_kv: Float[Tensor, "batch num_k {self.d_model}"],
        mask: Bool[Tensor, "..."] | Float[Tensor, "..."] | None = None,
    ) -> Float[Tensor, "batch {self.num_heads} num_q {self.d_model}"]:
        """Per-head terms ``head_j @ W_o[:, cols_j]^T``; their sum over heads plus ``w_o.bias`` = ``forward``.

        Claims: mha.output-sum-of-heads, mha.value-low-rank.
        """
        outputs, _ = self.per_head_outputs(x_q, x_kv, mask)
        terms = [out @ self.w_o.weight[:, self.head_slice(j)].T for j, out in enumerate(outputs)]
        return torch.stack(terms, dim=1)
