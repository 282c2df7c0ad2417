"""Planted bug: a hand-written softmax ``exp(s) / sum(exp(s))`` without subtracting the row maximum,
computed in the input dtype.

Correct for modest scores; scores scaled by 1e3 (or float16 scores above ~11) overflow ``exp`` to inf
and the weights become inf / inf = NaN.
Rejected by: attention.weights.range (check ``attention.weights.range``),
attention.convex-combination (check ``attention.convex-combination``),
attention.formula (check ``attention.differential``). (``attention.half-precision`` fails on it too
but is blocked by the formula failure; ``mutant.attention-half-path-no-max`` has the bug in its half
path only.)
"""

import math

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.masks import causal_mask, combine_masks
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = (
    "attention.weights.range",
    "attention.convex-combination",
    "attention.differential",
)


class AttentionSoftmaxNoMaxMutant(ReferenceAdapter):
    """Attention with an overflow-prone softmax."""

    name = "mutant.attention-softmax-no-max"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``exp(scores)`` with no max subtraction."""
        if is_causal:
            mask = combine_masks(mask, causal_mask(q.shape[-2], k.shape[-2], device=q.device))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        e = torch.exp(scores)
        if mask is not None:
            e = e.masked_fill(~mask, 0.0)
        weights = e / e.sum(dim=-1, keepdim=True)
        return weights @ v, weights


def make() -> AttentionSoftmaxNoMaxMutant:
    """Factory for ``--impl mutant.attention-softmax-no-max``."""
    return AttentionSoftmaxNoMaxMutant()
