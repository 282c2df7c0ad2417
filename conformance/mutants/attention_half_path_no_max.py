"""Planted bug: a kernel with a separate fast path for float16/bfloat16 whose softmax is
``exp(s) / sum(exp(s))`` without subtracting the row maximum; float32 and float64 take the
reference's path.

Every float32 check passes, the formula check included; in half precision scores above ~11 overflow
``exp`` (float16) and scores scaled by 1e3 give NaN weights.
Rejected by: attention.half-precision-softmax (check ``attention.half-precision``).
"""

import math

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.masks import causal_mask, combine_masks
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.half-precision",)

HALF = (torch.float16, torch.bfloat16)


class AttentionHalfPathNoMaxMutant(ReferenceAdapter):
    """Reference attention, except for an overflow-prone softmax on half inputs."""

    name = "mutant.attention-half-path-no-max"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: on half inputs, ``exp(scores)`` in the input dtype with no max subtraction."""
        if q.dtype not in HALF:
            return super().attention(q, k, v, mask=mask, is_causal=is_causal)
        if is_causal:
            mask = combine_masks(mask, causal_mask(q.shape[-2], k.shape[-2], device=q.device))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        e = torch.exp(scores)
        if mask is not None:
            e = e.masked_fill(~mask, 0.0)
        weights = e / e.sum(dim=-1, keepdim=True)
        return weights @ v, weights


def make() -> AttentionHalfPathNoMaxMutant:
    """Factory for ``--impl mutant.attention-half-path-no-max``."""
    return AttentionHalfPathNoMaxMutant()
