"""Planted bug: the output buffer is preallocated with ``torch.empty_like(q)``, silently assuming
``d_v == d_k``.

Every model with equal query and value widths works; ``d_v != d_k`` raises.
Rejected by: attention.shapes (check ``attention.shapes.value-width``).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.shapes.value-width",)


class AttentionOutputLikeQMutant(ReferenceAdapter):
    """Reference attention written into a buffer shaped like ``q``."""

    name = "mutant.attention-output-like-q"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``out = torch.empty_like(q); out.copy_(result)``."""
        result, weights = super().attention(q, k, v, mask=mask, is_causal=is_causal)
        out = torch.empty_like(q)
        out.copy_(result)
        return out, weights


def make() -> AttentionOutputLikeQMutant:
    """Factory for ``--impl mutant.attention-output-like-q``."""
    return AttentionOutputLikeQMutant()
