"""Planted bug: masking adds a finite bias (``(1 - mask) * -10000``, the old BERT idiom) to the scores,
and the target declares ``fully_masked_row = "uniform"`` believing a query with no visible key then
attends uniformly. It does not: every key gets the same -1e4, so the row is softmax of the unmasked
scores, not 1/num_k.

Rows with a visible key are right (exp(-1e4) is 0 in float32).
Rejected by: attention.weights.rows-sum-to-one (check ``attention.fully-masked-row.declared``).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability, Conventions
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.masks import causal_mask, combine_masks
from transformer_conformance.targets.reference import ReferenceAdapter

#: The finite bias added at masked positions.
BIAS = -1e4

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.fully-masked-row.declared",)


class AttentionUniformDeclaredAdditiveBiasMutant(ReferenceAdapter):
    """Additive -1e4 masking, declared as the 'uniform' convention."""

    name = "mutant.attention-uniform-declared-additive-bias"
    capabilities = frozenset({Capability.ATTENTION})
    conventions = Conventions(
        fully_masked_row="uniform",
        dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16),
    )

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``scores + where(keep, 0, -1e4)``, whatever the row."""
        if is_causal:
            mask = combine_masks(mask, causal_mask(q.shape[-2], k.shape[-2], device=q.device))
        bias = None
        if mask is not None:
            zero = torch.zeros((), dtype=q.dtype, device=q.device)
            bias = torch.where(mask, zero, torch.full((), BIAS, dtype=q.dtype, device=q.device))
        out, weights = scaled_dot_product_attention(q, k, v, bias)
        return out, weights


def make() -> AttentionUniformDeclaredAdditiveBiasMutant:
    """Factory for ``--impl mutant.attention-uniform-declared-additive-bias``."""
    return AttentionUniformDeclaredAdditiveBiasMutant()
