"""Planted bug: the softmax normalises over the queries (axis -2) instead of the keys (axis -1).

The weights then sum to one down each column, the layout N2 describes, not along each query row.
Rejected by: attention.weights.rows-sum-to-one (check ``attention.weights.rows-sum-to-one``).
"""

import math

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.weights.rows-sum-to-one",)


class SoftmaxWrongAxisMutant(ReferenceAdapter):
    """Masked attention whose softmax runs over the wrong axis."""

    name = "mutant.softmax-wrong-axis"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``softmax(dim=-2)``."""
        if is_causal:
            nq, nk = q.shape[-2], k.shape[-2]
            causal = torch.ones(nq, nk, dtype=torch.bool, device=q.device).tril(nk - nq)
            mask = causal if mask is None else mask & causal
        scores = (q.double() @ k.double().transpose(-2, -1)) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-2).nan_to_num(0.0)
        out = weights @ v.double()
        return out.to(q.dtype), weights.to(q.dtype)


def make() -> SoftmaxWrongAxisMutant:
    """Factory for ``--impl mutant.softmax-wrong-axis``."""
    return SoftmaxWrongAxisMutant()
