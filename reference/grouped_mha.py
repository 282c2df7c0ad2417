"""Grouped-query multi-head attention (GQA/MQA) as a layer: ``num_heads`` query heads over
``num_kv_heads`` key/value heads, with the parameter names of ``reference.multihead``.

Parameters: ``w_q`` and ``w_o`` are ``d_model x d_model`` as in ``MultiHeadAttention``; ``w_k`` and
``w_v`` project to ``num_kv_heads * d_head`` only (KV head ``j`` takes rows ``j*d_head : (j+1)*d_head``).
Query head ``h`` reads KV head ``h // g`` (``contiguous``, torch SDPA ``enable_gqa``, Hugging Face
``repeat_kv``) or ``h % num_kv_heads`` (``tiled``), ``g = num_heads / num_kv_heads``
(``reference.grouped``). With ``num_kv_heads == num_heads`` it is ``MultiHeadAttention``; with one KV
head it is multi-query attention.

``expanded_state`` gives the state of the ``MultiHeadAttention`` that computes the same function (each
KV head's projection rows repeated for its query group), and ``relabel_state`` the state of the same
layer with its heads relabelled: query heads permuted within their groups, KV heads permuted together
with their groups. Both are what ``conformance/checks/mha_grouped.py`` uses (claims
mha.gqa-projections, mha.gqa-group-relabel).
"""

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.checking import checked, require
from transformer_conformance.reference.grouped import KV_MAPPINGS, KVMapping, grouped_attention, repeat_kv
from transformer_conformance.reference.multihead import (
    MultiHeadAttention,
    head_mask,
    merge_heads,
    split_heads,
)


def kv_head_of(head: int, num_heads: int, num_kv_heads: int, mapping: KVMapping = "contiguous") -> int:
    """The KV head that query head ``head`` reads. Claims: gqa.repeat-equivalence."""
    require(
        num_heads % num_kv_heads == 0, "num_heads", f"a multiple of num_kv_heads = {num_kv_heads}", num_heads
    )
    group = num_heads // num_kv_heads
    return head // group if mapping == "contiguous" else head % num_kv_heads


class GroupedMultiHeadAttention(MultiHeadAttention):
    """Multi-head attention whose ``num_heads`` query heads share ``num_kv_heads`` K/V heads.

    Claims: mha.gqa-projections, gqa.repeat-equivalence, gqa.mqa-one-group.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_kv_heads: int,
        *,
        mapping: KVMapping = "contiguous",
        bias: bool = True,
    ) -> None:
        super().__init__(d_model, num_heads, bias=bias)
        require(num_kv_heads > 0, "num_kv_heads", "a positive integer", num_kv_heads)
        require(
            num_heads % num_kv_heads == 0,
            "num_kv_heads",
            f"a divisor of num_heads = {num_heads}",
            num_kv_heads,
        )
        require(mapping in KV_MAPPINGS, "mapping", f"one of {KV_MAPPINGS}", repr(mapping))
        self.num_kv_heads = num_kv_heads
        self.mapping: KVMapping = mapping
        width = num_kv_heads * self.d_head
        self.w_k = nn.Linear(d_model, width, bias=bias)
        self.w_v = nn.Linear(d_model, width, bias=bias)

    def kv_head(self, head: int) -> int:
        """The KV head query head ``head`` reads under the declared mapping."""
        return kv_head_of(head, self.num_heads, self.num_kv_heads, self.mapping)

    @checked
    def forward(
        self,
        x_q: Float[Tensor, "batch num_q {self.d_model}"],
        x_kv: Float[Tensor, "batch num_k {self.d_model}"],
        mask: Bool[Tensor, "..."] | Float[Tensor, "..."] | None = None,
        cache: object = None,
    ) -> tuple[
        Float[Tensor, "batch num_q {self.d_model}"], Float[Tensor, "batch {self.num_heads} num_q num_k"]
    ]:
        """Grouped attention from ``x_q`` to ``x_kv``; ``mask`` broadcasts to ``[b, h, num_q, num_k]``
        (True = may attend, or an additive float bias). No cache (``cache`` must be None).

        Claims: mha.gqa-projections, gqa.repeat-equivalence, mha.shape-preserving.
        """
        require(cache is None, "cache", "None (the grouped layer has no cache path)", type(cache).__name__)
        self.require_inputs(x_q, x_kv)
        q = split_heads(self.w_q(x_q), self.num_heads)
        k = split_heads(self.w_k(x_kv), self.num_kv_heads)
        v = split_heads(self.w_v(x_kv), self.num_kv_heads)
        keep = mask if mask is not None and mask.dtype == torch.bool else None
        bias = mask if mask is not None and mask.dtype != torch.bool else None
        heads, weights = grouped_attention(q, k, v, keep, bias, mapping=self.mapping)
        out: Tensor = self.w_o(merge_heads(heads))
        return out, weights

    def kv_slice(self, kv_head: int) -> slice:
        """Rows of ``w_k`` / ``w_v`` that belong to KV head ``kv_head``."""
        return slice(kv_head * self.d_head, (kv_head + 1) * self.d_head)

    def per_head_outputs(
        self, x_q: Tensor, x_kv: Tensor, mask: Tensor | None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Each query head computed alone against the rows of its KV head."""
        outputs, weights = [], []
        for head in range(self.num_heads):
            rows = self.kv_slice(self.kv_head(head))
            q = self.head_projection(self.w_q, head, x_q)
            k = nn.functional.linear(
                x_kv, self.w_k.weight[rows], None if self.w_k.bias is None else self.w_k.bias[rows]
            )
            v = nn.functional.linear(
                x_kv, self.w_v.weight[rows], None if self.w_v.bias is None else self.w_v.bias[rows]
            )
            out, w = scaled_dot_product_attention(q, k, v, head_mask(mask, head))
            outputs.append(out)
            weights.append(w)
        return outputs, weights


def _repeat_rows(x: Tensor, num_kv_heads: int, num_heads: int, mapping: KVMapping) -> Tensor:
    """KV-head row blocks of a weight ``[kv*d, ...]`` (or bias ``[kv*d]``) repeated to ``[h*d, ...]``."""
    d = x.shape[0] // num_kv_heads
    blocks = x.reshape(1, num_kv_heads, d, -1)
    return repeat_kv(blocks, num_heads, mapping).reshape(num_heads * d, *x.shape[1:])


def expanded_state(
    state: dict[str, Tensor], num_heads: int, num_kv_heads: int, mapping: KVMapping = "contiguous"
) -> dict[str, Tensor]:
    """The ``MultiHeadAttention`` state computing the same function as a grouped layer's ``state``:
    each KV head's rows of ``w_k`` / ``w_v`` repeated for every query head that reads it.

    Claims: mha.gqa-projections, gqa.repeat-equivalence.
    """
    out = dict(state)
    for name in ("w_k.weight", "w_k.bias", "w_v.weight", "w_v.bias"):
        if name in state:
            out[name] = _repeat_rows(state[name], num_kv_heads, num_heads, mapping)
    return out


def _permute_blocks(x: Tensor, order: list[int], dim: int) -> Tensor:
    """Blocks of equal width along ``dim`` put in ``order`` (new block ``i`` = old block ``order[i]``)."""
    blocks = x.chunk(len(order), dim=dim)
    return torch.cat([blocks[i] for i in order], dim=dim)


def relabel_order(
    num_heads: int, num_kv_heads: int, within: list[list[int]], kv_order: list[int], mapping: KVMapping
) -> list[int]:
    """The query-head order of a relabelling: KV head ``j`` of the new layer is old KV head
    ``kv_order[j]``, and the ``r``-th query head of its group is the old group's ``within[j][r]``-th.

    Claims: mha.gqa-group-relabel.
    """
    groups = [
        [h for h in range(num_heads) if kv_head_of(h, num_heads, num_kv_heads, mapping) == j]
        for j in range(num_kv_heads)
    ]
    order = [0] * num_heads
    for j in range(num_kv_heads):
        old = groups[kv_order[j]]
        for r, new_head in enumerate(groups[j]):
            order[new_head] = old[within[j][r]]
    return order


def relabel_state(
    state: dict[str, Tensor], num_heads: int, num_kv_heads: int, head_order: list[int], kv_order: list[int]
) -> dict[str, Tensor]:
    """A grouped layer's ``state`` with query head ``i`` taken from old head ``head_order[i]`` (rows of
    ``w_q``, columns of ``w_o``) and KV head ``j`` from old KV head ``kv_order[j]`` (rows of ``w_k``,
    ``w_v``). With ``head_order`` from ``relabel_order`` the layer computes the same output, its
    weights permuted along the head axis by ``head_order``.

    Claims: mha.gqa-group-relabel.
    """
    out = dict(state)
    for name in ("w_q.weight", "w_q.bias"):
        if name in state:
            out[name] = _permute_blocks(state[name], head_order, 0)
    out["w_o.weight"] = _permute_blocks(state["w_o.weight"], head_order, 1)
    for name in ("w_k.weight", "w_k.bias", "w_v.weight", "w_v.bias"):
        if name in state:
            out[name] = _permute_blocks(state[name], kv_order, 0)
    return out


def mha_reference(
    d_model: int, num_heads: int, num_kv_heads: int | None = None, mapping: KVMapping = "contiguous"
) -> MultiHeadAttention:
    """``MultiHeadAttention`` when ``num_kv_heads`` is None, else ``GroupedMultiHeadAttention``.

    Claims: mha.gqa-projections.
    """
    if num_kv_heads is None:
        return MultiHeadAttention(d_model, num_heads)
    return GroupedMultiHeadAttention(d_model, num_heads, num_kv_heads, mapping=mapping)
