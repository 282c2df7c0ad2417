"""Planted bug: a query with no visible key gets NaN (plain softmax over all -inf) although the
target declares the project convention ``fully_masked_row = "zero"``.

Rejected by: attention.fully-masked-row (check ``attention.fully-masked-row``).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.fully-masked-row",)


class NanFullyMaskedMutant(ReferenceAdapter):
    """Reference attention with NaN written into rows that see no key."""

    name = "mutant.nan-fully-masked"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: rows with no visible key become NaN (what ``softmax`` of all ``-inf`` gives)."""
        out, weights = super().attention(q, k, v, mask=mask, is_causal=is_causal)
        assert weights is not None
        if mask is None:
            return out, weights
        dead = ~mask.expand(weights.shape).any(dim=-1, keepdim=True)
        nan = torch.full((), float("nan"), dtype=out.dtype, device=out.device)
        return torch.where(dead, nan, out), torch.where(dead, nan, weights)


def make() -> NanFullyMaskedMutant:
    """Factory for ``--impl mutant.nan-fully-masked``."""
    return NanFullyMaskedMutant()
