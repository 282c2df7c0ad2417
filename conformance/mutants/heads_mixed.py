"""Planted bug: heads are split with the wrong reshape, ``[b, l, d_head, h]`` instead of
``[b, l, h, d_head]``, so head j takes the strided columns j, j+h, j+2h, ... while the merge
concatenates contiguous blocks: the heads are mixed up.

Rejected by: mha.split-merge-roundtrip (check ``mha.differential``).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.masks import combine_masks, key_padding_to_attention_mask
from transformer_conformance.reference.multihead import MultiHeadAttention, merge_heads
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mha.differential",)


def strided_split(x: Tensor, num_heads: int) -> Tensor:
    """The bug: ``[b, l, h*d] -> [b, l, d, h] -> [b, h, l, d]``."""
    b, length, width = x.shape
    return x.reshape(b, length, width // num_heads, num_heads).permute(0, 3, 1, 2)


class HeadsMixedMutant(ReferenceAdapter):
    """The reference MHA with a wrong head split."""

    name = "mutant.heads-mixed"
    capabilities = frozenset({Capability.MHA})

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """Reference weights, strided head split, contiguous merge."""
        module = _build(lambda: MultiHeadAttention(d_model, num_heads), state, device, dtype)
        assert isinstance(module, MultiHeadAttention)

        def run(
            x_q: Tensor, x_kv: Tensor, key_padding: Tensor | None = None, attn_mask: Tensor | None = None
        ) -> tuple[Tensor, Tensor | None]:
            padding = None if key_padding is None else key_padding_to_attention_mask(key_padding)
            q = strided_split(module.w_q(x_q), num_heads)
            k = strided_split(module.w_k(x_kv), num_heads)
            v = strided_split(module.w_v(x_kv), num_heads)
            heads, weights = scaled_dot_product_attention(q, k, v, combine_masks(padding, attn_mask))
            out: Tensor = module.w_o(merge_heads(heads))
            return out, weights

        return run


def make() -> HeadsMixedMutant:
    """Factory for ``--impl mutant.heads-mixed``."""
    return HeadsMixedMutant()
