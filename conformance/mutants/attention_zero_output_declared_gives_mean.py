"""Planted bug: the target declares the x-transformers policy for a query with no visible key (zero
output row, uniform weights 1/num_k) but its output row is the mean of the values -- what the uniform
weights would give if they were applied -- i.e. the 'uniform' policy under the wrong name.

Rejected by: attention.weights.rows-sum-to-one via the declared policy (check
``attention.fully-masked-row.declared``).
"""

from dataclasses import replace

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.fully-masked-row.declared",)


class ZeroOutputUniformWeights(ReferenceAdapter):
    """Reference attention under the x-transformers policy (correct unless ``mean_output``)."""

    name = "zero-output-uniform-weights"
    capabilities = frozenset({Capability.ATTENTION})
    conventions = replace(ReferenceAdapter.conventions, fully_masked_row="zero_output_uniform_weights")
    mean_output = False

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Rows with no visible key: weights 1/num_k; output 0 (or, the bug, the mean of the values)."""
        out, weights = super().attention(q, k, v, mask=mask, is_causal=is_causal)
        assert weights is not None
        if mask is None:
            return out, weights
        dead = ~mask.expand(weights.shape).any(dim=-1, keepdim=True)
        weights = torch.where(dead, torch.full_like(weights, 1.0 / k.shape[-2]), weights)
        dead_out = (
            v.mean(dim=-2, keepdim=True).expand(out.shape) if self.mean_output else torch.zeros_like(out)
        )
        return torch.where(dead, dead_out, out), weights


class AttentionZeroOutputDeclaredGivesMeanMutant(ZeroOutputUniformWeights):
    """Declares zero output for fully masked rows, returns the mean of the values."""

    name = "mutant.attention-zero-output-declared-gives-mean"
    mean_output = True


def make() -> AttentionZeroOutputDeclaredGivesMeanMutant:
    """Factory for ``--impl mutant.attention-zero-output-declared-gives-mean``."""
    return AttentionZeroOutputDeclaredGivesMeanMutant()
