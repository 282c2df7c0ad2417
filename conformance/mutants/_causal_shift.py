"""Shared base of the planted causal-mask bugs: a reference attention whose ``is_causal`` mask is
shifted, ``key_pos <= query_pos + SHIFT`` (bottom-right aligned) instead of ``key_pos <= query_pos``."""

from typing import ClassVar

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.masks import combine_masks
from transformer_conformance.targets.reference import ReferenceAdapter


class ShiftedCausalMutant(ReferenceAdapter):
    """Reference attention whose causal mask lets query ``p`` see keys up to ``p + SHIFT``."""

    capabilities = frozenset({Capability.ATTENTION})
    #: 0 would be the correct mask; +1 sees one future key, -1 hides the diagonal.
    SHIFT: ClassVar[int] = 0

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``key_pos <= query_pos + SHIFT``."""
        if is_causal:
            nq, nk = q.shape[-2], k.shape[-2]
            query_pos = torch.arange(nq, device=q.device).unsqueeze(-1) + (nk - nq)
            shifted = torch.arange(nk, device=q.device).unsqueeze(0) <= query_pos + self.SHIFT
            mask = combine_masks(mask, shifted)
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        return out, weights
