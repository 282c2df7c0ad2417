"""Planted bug: ``is_causal`` lets each query see one key too many (``key <= query + 1``).

A classic off-by-one of a hand-written causal mask (``triu(diagonal=2)`` for ``diagonal=1``): the query
at position p also sees the key at p + 1. The smallest case that shows it is two positions
(b=1 h=1 nq=2 nk=2): query 0 moves when key 1 changes. ``tests/conformance/test_search.py`` uses it
to show shrinking at work.
Rejected by: mask.causal.future-blind (check ``mask.causal.is-causal``).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.masks import combine_masks
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mask.causal.is-causal",)


class AttentionCausalOffByOneMutant(ReferenceAdapter):
    """Reference attention whose causal mask is shifted by one key (bottom-right aligned)."""

    name = "mutant.attention-causal-off-by-one"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``key_pos <= query_pos + 1``."""
        if is_causal:
            nq, nk = q.shape[-2], k.shape[-2]
            query_pos = torch.arange(nq, device=q.device).unsqueeze(-1) + (nk - nq)
            leaky = torch.arange(nk, device=q.device).unsqueeze(0) <= query_pos + 1
            mask = combine_masks(mask, leaky)
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        return out, weights


def make() -> AttentionCausalOffByOneMutant:
    """Factory for ``--impl mutant.attention-causal-off-by-one``."""
    return AttentionCausalOffByOneMutant()
