"""A correct grouped-query MHA target that the grouped-MHA mutants break one way each.

``GroupedMhaAdapter`` declares ``num_kv_heads = 2`` (contiguous) for its MHA and computes with the
reference ``GroupedMultiHeadAttention``'s weights through ``reference.grouped.grouped_attention``;
subclasses change ``mapping`` or ``scale``. (A private module: test_teeth.py audits only the public
mutant modules.)
"""

from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.grouped import KVMapping, grouped_attention
from transformer_conformance.reference.grouped_mha import GroupedMultiHeadAttention
from transformer_conformance.reference.masks import combine_masks, key_padding_to_attention_mask
from transformer_conformance.reference.multihead import merge_heads, split_heads
from transformer_conformance.targets.reference import _build

NUM_KV_HEADS = 2


class GroupedMhaAdapter(Adapter):
    """A grouped MHA of ``NUM_KV_HEADS`` KV heads, declared contiguous."""

    name = "grouped-mha"
    capabilities = frozenset({Capability.MHA})
    conventions = Conventions()
    architecture = Architecture(num_kv_heads=NUM_KV_HEADS)

    def mapping(self) -> KVMapping:
        """The KV mapping the layer computes with (the declared one unless a subclass lies)."""
        return self.architecture_for(Capability.MHA).kv_mapping

    def scale(self, d_head: int, num_kv_heads: int) -> float | None:
        """The score scale the layer computes with (None: 1/sqrt(d_head))."""
        return None

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """The reference grouped layer's weights, attention under ``mapping()`` and ``scale()``."""
        built = _build(
            lambda: GroupedMultiHeadAttention(d_model, num_heads, NUM_KV_HEADS), state, device, dtype
        )
        module = cast(GroupedMultiHeadAttention, built)
        mapping, scale = self.mapping(), self.scale(module.d_head, NUM_KV_HEADS)

        def run(
            x_q: Tensor, x_kv: Tensor, key_padding: Tensor | None = None, attn_mask: Tensor | None = None
        ) -> tuple[Tensor, Tensor | None]:
            padding = None if key_padding is None else key_padding_to_attention_mask(key_padding)
            keep = combine_masks(padding, attn_mask)
            q = split_heads(module.w_q(x_q), num_heads)
            k = split_heads(module.w_k(x_kv), NUM_KV_HEADS)
            v = split_heads(module.w_v(x_kv), NUM_KV_HEADS)
            heads, weights = grouped_attention(q, k, v, keep, mapping=mapping, scale=scale)
            out: Tensor = module.w_o(merge_heads(heads))
            return out, weights

        return run
