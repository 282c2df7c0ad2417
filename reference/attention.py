"""Scaled dot-product attention: ``softmax(Q K^T / sqrt(d_k)) V`` with the project's masking policy.

Numerical policy (docs/ARCHITECTURE.md):

- Scores, softmax and the weighted sum run in float32 for float16/bfloat16 inputs (float32 and float64
  keep their dtype); output and weights are cast back to the input dtype. This is cast-compute-cast: a
  float16 ``Q K^T`` of scores scaled by 1e3 would overflow, a float32 one does not.
- The softmax subtracts the row maximum over visible keys, so large scores never overflow ``exp``.
- Masked weights are set with a boolean ``where`` and are therefore exactly 0, not merely small.
- A query with no visible key (fully masked row) gets all-zero weights and an all-zero output row,
  never NaN.
- Value rows that no query may see are replaced by zeros before the weighted sum, so NaN/Inf contents
  at padded positions cannot leak through ``0 * NaN``. If some value row is still non-finite and is
  hidden from only some queries, the weighted sum is computed key by key with a ``where``, so each
  query only ever touches values it may see.
"""

import math

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from transformer_conformance.reference.checking import (
    ReferenceInputError,
    checked,
    require,
    require_floating,
    require_same_device,
    require_same_dtype,
)
from transformer_conformance.reference.masks import broadcast_shape


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the softmax runs in: at least float32 (float64 stays float64).

    Claims: attention.half-precision-softmax.
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


def mask_to_keep(mask: Tensor, target_shape: tuple[int, ...]) -> tuple[Tensor, Tensor | None]:
    """Validate ``mask`` and split it into a boolean keep-mask and an optional additive bias.

    A boolean mask is the keep-mask itself (True = may attend). A float mask is an additive bias; its
    ``-inf`` entries count as masked (exact zero weight). Both must broadcast to ``target_shape`` without
    changing it.

    Claims: mask.boolean-equals-additive, mask.neg-inf-exact-zero.
    """
    require(
        mask.dtype == torch.bool or mask.is_floating_point(),
        "mask",
        "a boolean keep-mask or a floating additive bias",
        mask.dtype,
    )
    if broadcast_shape(mask.shape, target_shape) != tuple(target_shape):
        raise ReferenceInputError(
            f"argument 'mask': expected a shape that broadcasts to [*batch, num_q, num_k] = "
            f"{list(target_shape)}, got {list(mask.shape)}"
        )
    if mask.dtype == torch.bool:
        return mask, None
    if mask.device.type != "meta":  # only -inf may hide a key; +inf or NaN would poison the row
        require(
            not bool((torch.isnan(mask) | (mask == float("inf"))).any()),
            "mask",
            "an additive bias of finite values and -inf (masked)",
            "+inf or NaN entries",
        )
    return mask != float("-inf"), mask


def masked_softmax(scores: Tensor, keep: Tensor | None) -> Tensor:
    """Row softmax over the last axis that is exactly 0 where ``keep`` is False; all-masked rows give zeros.

    Claims: attention.weights.range, attention.weights.rows-sum-to-one, attention.fully-masked-row,
    mask.neg-inf-exact-zero, attention.half-precision-softmax.
    """
    if scores.shape[-1] == 0:  # no keys at all: every row is fully masked
        return torch.zeros_like(scores)
    if keep is None:
        return torch.softmax(scores, dim=-1)  # subtracts the row maximum: large scores never overflow
    hidden = ~keep.expand(scores.shape)
    weights = torch.softmax(scores.masked_fill(hidden, float("-inf")), dim=-1)
    # Masked entries become exactly 0; a fully masked row (softmax of all -inf is NaN) becomes all 0.
    return weights.masked_fill(hidden, 0.0)


def weighted_values(weights: Tensor, values: Tensor, keep: Tensor | None) -> Tensor:
    """``weights @ values`` in which no query touches a value row it may not see (NaN-safe padding).

    Claims: mask.padding.invariance, mask.padding.pad-value-arbitrary.
    """
    if keep is None:
        return weights @ values
    keep = keep.expand(weights.shape)
    seen_by_any = keep.any(dim=-2).unsqueeze(-1)  # [*batch, num_k, 1]
    values = torch.where(seen_by_any, values, torch.zeros_like(values))
    if bool(torch.isfinite(values).all()):
        return weights @ values
    # Rare path (non-finite values hidden from only some queries): a per-(query, key) where.
    terms = weights.unsqueeze(-1) * values.unsqueeze(-3)  # [*batch, num_q, num_k, d_v]
    terms = torch.where(keep.unsqueeze(-1), terms, torch.zeros_like(terms))
    return terms.sum(dim=-2)


@checked
def scaled_dot_product_attention(
    q: Float[Tensor, "*batch num_q d_k"],
    k: Float[Tensor, "*batch num_k d_k"],
    v: Float[Tensor, "*batch num_k d_v"],
    mask: Bool[Tensor, "..."] | Float[Tensor, "..."] | None = None,
    *,
    scale: float | None = None,
) -> tuple[Float[Tensor, "*batch num_q d_v"], Float[Tensor, "*batch num_q num_k"]]:
    """Return ``(softmax(q k^T * scale) v, weights)``; ``scale`` defaults to ``1 / sqrt(d_k)``.

    ``mask`` is a boolean keep-mask (True = may attend) or an additive float bias (``-inf`` = masked),
    broadcastable to ``[*batch, num_q, num_k]``; a shape that would change that broadcast is an error.
    ``num_q != num_k`` and ``d_v != d_k`` are allowed. See the module docstring for the numerical policy
    (float32 softmax for half inputs, exact zeros, fully masked rows give zeros, NaN-safe padding).

    Claims: attention.formula, attention.shapes, attention.qk-same-width, attention.kv-same-count,
    attention.score-is-dot-product, attention.scale.sqrt-dk, attention.weights.range,
    attention.weights.rows-sum-to-one, attention.convex-combination, attention.fully-masked-row,
    attention.half-precision-softmax, attention.pattern-quadratic, attention.permutation-equivariance,
    mask.boolean-equals-additive, mask.neg-inf-exact-zero, mask.padding.invariance, attention.kv-lookup.
    """
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        require_floating(name, tensor)
    require(q.shape[-1] == k.shape[-1], "k", f"last dimension d_k = {q.shape[-1]} (as q)", k.shape[-1])
    require(k.shape[-2] == v.shape[-2], "v", f"{k.shape[-2]} rows (one per key in k)", v.shape[-2])
    require(q.shape[-1] > 0, "q", "a positive width d_k", q.shape[-1])
    require_same_dtype(q=q, k=k, v=v)
    require_same_device(q=q, k=k, v=v, mask=mask)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    require(math.isfinite(scale) and scale > 0, "scale", "a finite positive number", scale)

    batch = tuple(q.shape[:-2])
    target_shape = (*batch, q.shape[-2], k.shape[-2])
    keep, bias = (None, None) if mask is None else mask_to_keep(mask, target_shape)

    work = compute_dtype(q.dtype)
    scores = (q.to(work) * scale) @ k.to(work).transpose(-2, -1)
    if bias is not None:
        assert keep is not None
        scores = scores + torch.where(keep, bias.to(work), torch.zeros((), dtype=work, device=scores.device))
    weights = masked_softmax(scores, keep)
    output = weighted_values(weights, v.to(work), keep)
    return output.to(q.dtype), weights.to(q.dtype)
