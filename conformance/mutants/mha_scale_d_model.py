"""Planted bug: multi-head attention scales scores by 1/sqrt(d_model) instead of 1/sqrt(d_head).

With one head the two agree; with h heads every head's softmax is sqrt(h) times too flat.
Rejected by: attention.scale.sqrt-dk (check ``mha.differential``).
"""

import math
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


class MhaScaleDModelMutant(ReferenceAdapter):
    """The reference MHA weights with the wrong score scale."""

    name = "mutant.mha-scale-d-model"
    capabilities = frozenset({Capability.MHA})

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """Reference projections; attention with ``scale = 1 / sqrt(d_model)`` (the bug)."""
        module = _build(lambda: MultiHeadAttention(d_model, num_heads), state, device, dtype)
        assert isinstance(module, MultiHeadAttention)

        def run(
            x_q: Tensor, x_kv: Tensor, key_padding: Tensor | None = None, attn_mask: Tensor | None = None
        ) -> tuple[Tensor, Tensor | None]:
            padding = None if key_padding is None else key_padding_to_attention_mask(key_padding)
            q = module.project_heads(module.w_q, x_q)
            k = module.project_heads(module.w_k, x_kv)
            v = module.project_heads(module.w_v, x_kv)
            heads, weights = scaled_dot_product_attention(
                q, k, v, combine_masks(padding, attn_mask), scale=1.0 / math.sqrt(d_model)
            )
            out: Tensor = module.w_o(merge_heads(heads))
            return out, weights

        return run


def make() -> MhaScaleDModelMutant:
    """Factory for ``--impl mutant.mha-scale-d-model``."""
    return MhaScaleDModelMutant()
