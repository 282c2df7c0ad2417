"""Planted bug: attention dropout (p = 0.1) is applied with ``training=True`` hard-coded, so it stays
on in evaluation.

Each call drops a different random tenth of the weights: repeated calls disagree.
Rejected by: determinism.eval (check ``attention.determinism``).
"""

import torch.nn.functional as F
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

#: Attention dropout probability.
P_DROP = 0.1

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.determinism",)


class AttentionDropoutLeftOnMutant(ReferenceAdapter):
    """Reference weights, then dropout in training mode."""

    name = "mutant.attention-dropout-left-on"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``F.dropout(weights, P_DROP, training=True)``."""
        _, weights = super().attention(q, k, v, mask=mask, is_causal=is_causal)
        assert weights is not None
        dropped = F.dropout(weights, P_DROP, training=True)
        return dropped @ v, dropped


def make() -> AttentionDropoutLeftOnMutant:
    """Factory for ``--impl mutant.attention-dropout-left-on``."""
    return AttentionDropoutLeftOnMutant()
