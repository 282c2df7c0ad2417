"""Attention masks: causal, padding, their combination, and the additive (0 / -inf) form.

Conventions (docs/ARCHITECTURE.md): a boolean mask says ``True`` where a query **may attend** to a
key, and broadcasts to ``[*batch, num_q, num_k]``. A padding mask is ``[batch, length]`` with ``True``
for real tokens. When ``num_q != num_k`` the causal mask is aligned ``bottom-right`` by default: query
``i`` sits at absolute position ``num_k - num_q + i`` (the KV-cache case, where the queries are the
newest tokens); ``top-left`` puts query ``i`` at position ``i``.
"""

from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from transformer_conformance.reference.checking import ReferenceInputError, checked, require

Alignment = Literal["bottom-right", "top-left"]


def broadcast_shape(*shapes: tuple[int, ...] | torch.Size) -> tuple[int, ...] | None:
    """NumPy-style broadcast of ``shapes``, or ``None`` when they do not broadcast."""
    ndim = max((len(s) for s in shapes), default=0)
    result: list[int] = []
    for axis in range(-ndim, 0):
        sizes = {s[axis] for s in shapes if len(s) >= -axis} - {1}
        if len(sizes) > 1:
            return None
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)


@checked
def causal_mask(
    num_q: int,
    num_k: int,
    *,
    alignment: Alignment = "bottom-right",
    device: torch.device | str | None = None,
) -> Bool[Tensor, "{num_q} {num_k}"]:
    """Keep-mask of causal attention: ``True`` where query i may see key j (key position <= query position).

    With ``alignment="bottom-right"`` query ``i`` has position ``num_k - num_q + i``; with ``"top-left"``
    it has position ``i``. For ``num_q == num_k`` both give the lower triangle including the diagonal.
    One ``[num_q, num_k]`` mask serves every sample of a batch (it broadcasts).

    Claims: mask.causal.boolean-lower-triangular, mask.causal.diagonal-visible, mask.causal.alignment,
    mask.causal.batch-shared, mask.causal.called-upper-triangular, mask.causal.inference-noop.
    """
    require(num_q >= 0, "num_q", "a non-negative integer", num_q)
    require(num_k >= 0, "num_k", "a non-negative integer", num_k)
    require(alignment in ("bottom-right", "top-left"), "alignment", "'bottom-right' or 'top-left'", alignment)
    offset = num_k - num_q if alignment == "bottom-right" else 0
    query_pos = torch.arange(num_q, device=device).unsqueeze(-1) + offset
    key_pos = torch.arange(num_k, device=device).unsqueeze(0)
    return key_pos <= query_pos


@checked
def padding_mask_from_lengths(
    lengths: Int[Tensor, " batch"], max_len: int, *, side: Literal["right", "left"] = "right"
) -> Bool[Tensor, "batch {max_len}"]:
    """``True`` at real tokens: the first ``lengths[b]`` positions (``side="right"``) or the last ones.

    Claims: mask.padding.invariance, mask.padding.pad-value-arbitrary.
    """
    require(max_len >= 0, "max_len", "a non-negative integer", max_len)
    require(side in ("right", "left"), "side", "'right' or 'left'", side)
    if lengths.numel():
        lo, hi = int(lengths.min()), int(lengths.max())
        require(lo >= 0 and hi <= max_len, "lengths", f"values in [0, {max_len}]", f"values in [{lo}, {hi}]")
    positions = torch.arange(max_len, device=lengths.device).unsqueeze(0)
    if side == "right":
        return positions < lengths.unsqueeze(-1)
    return positions >= (max_len - lengths).unsqueeze(-1)


@checked
def padding_mask_from_ids(ids: Int[Tensor, "batch length"], pad_id: int) -> Bool[Tensor, "batch length"]:
    """``True`` where ``ids != pad_id`` (real tokens).

    Claims: mask.padding.pad-value-arbitrary.
    """
    return ids != pad_id


@checked
def key_padding_to_attention_mask(
    key_padding: Bool[Tensor, "batch num_k"],
) -> Bool[Tensor, "batch 1 1 num_k"]:
    """Reshape a key padding mask ``[batch, num_k]`` to ``[batch, 1, 1, num_k]`` (broadcasts over h, q).

    Claims: mask.padding.invariance.
    """
    return key_padding[:, None, None, :]


@checked
def combine_masks(*masks: Bool[Tensor, "..."] | None) -> Bool[Tensor, "..."] | None:
    """Logical AND of boolean keep-masks, broadcast; ``None`` entries are skipped (all ``None``: ``None``).

    Claims: mask.padding.invariance, mask.causal.future-blind.
    """
    present = [m for m in masks if m is not None]
    for index, m in enumerate(present):
        require(m.dtype == torch.bool, f"masks[{index}]", "a boolean keep-mask (True = may attend)", m.dtype)
    if not present:
        return None
    shape = broadcast_shape(*(m.shape for m in present))
    if shape is None:
        shapes = ", ".join(str(tuple(m.shape)) for m in present)
        raise ReferenceInputError(f"argument 'masks': expected broadcastable shapes, got {shapes}")
    result = present[0].expand(shape)
    for m in present[1:]:
        result = result & m
    return result


@checked
def additive_mask(
    keep: Bool[Tensor, "*shape"], dtype: torch.dtype = torch.float32
) -> Float[Tensor, "*shape"]:
    """The additive form of a keep-mask: ``0`` where attending is allowed, ``-inf`` elsewhere.

    Claims: mask.causal.additive-form, mask.boolean-equals-additive, mask.neg-inf-exact-zero.
    """
    require(torch.empty((), dtype=dtype).is_floating_point(), "dtype", "a floating dtype", dtype)
    zero = torch.zeros((), dtype=dtype, device=keep.device)
    neg_inf = torch.full((), float("-inf"), dtype=dtype, device=keep.device)
    return torch.where(keep, zero, neg_inf)
