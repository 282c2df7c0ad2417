"""Planted bug: a ``reshape`` where a ``transpose`` was meant folds the batch into the key axis, so
every query attends to the keys and values of every sample in the batch.

With batch size 1 it is exact; with more samples each output mixes in the other samples.
Rejected by: batch.independence (check ``attention.batch-independence``).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.masks import causal_mask, combine_masks
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.batch-independence",)


def batch_flattened_attention(q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None) -> tuple[Tensor, Tensor]:
    """The bug: keys/values [b, h, nk, d] become one sequence of b * nk keys shared by all samples.

    ``keep`` ([b|1, h|1, nq, nk], True = may attend) is repeated for every sample's block of keys;
    the returned weights are each sample's own block, so every shape stays right.
    """
    b, h, nq, nk = q.shape[0], q.shape[1], q.shape[-2], k.shape[-2]
    k_all = k.transpose(0, 1).reshape(1, h, b * nk, k.shape[-1]).expand(b, -1, -1, -1)
    v_all = v.transpose(0, 1).reshape(1, h, b * nk, v.shape[-1]).expand(b, -1, -1, -1)
    keep_all = None if keep is None else keep.expand(b, h, nq, nk).repeat(1, 1, 1, b)
    out, weights = scaled_dot_product_attention(q, k_all, v_all, keep_all)
    own = torch.arange(b, device=q.device)
    return out, weights.reshape(b, h, nq, b, nk)[own, :, :, own]


class AttentionBatchFlattenedKeysMutant(ReferenceAdapter):
    """Attention over the keys of the whole batch."""

    name = "mutant.attention-batch-flattened-keys"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Causal mask as the reference, then ``batch_flattened_attention``."""
        if is_causal:
            mask = combine_masks(mask, causal_mask(q.shape[-2], k.shape[-2], device=q.device))
        return batch_flattened_attention(q, k, v, mask)


def make() -> AttentionBatchFlattenedKeysMutant:
    """Factory for ``--impl mutant.attention-batch-flattened-keys``."""
    return AttentionBatchFlattenedKeysMutant()
