"""Planted bug: the loss averages over every shifted target, pad targets included.

``cross_entropy`` without ``ignore_index``: padded batches get a loss that depends on how much
padding there is. Rejected by: loss.ignores-padding (check ``loss.ignores-padding``).
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("loss.ignores-padding",)


class LossCountsPaddingMutant(ReferenceAdapter):
    """Shifted cross-entropy that forgets to ignore pad targets."""

    name = "mutant.loss-counts-padding"
    capabilities = frozenset({Capability.LOSS})

    def next_token_loss(self, logits: Tensor, ids: Tensor, pad_id: int | None) -> Tensor:
        """Mean of -log p(ids[:, t + 1]) over all t, pads counted (the bug)."""
        work = logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32)
        flat = work[:, :-1].reshape(-1, logits.shape[-1])
        return F.cross_entropy(flat, ids[:, 1:].reshape(-1)).to(logits.dtype)


def make() -> LossCountsPaddingMutant:
    """Factory for ``--impl mutant.loss-counts-padding``."""
    return LossCountsPaddingMutant()
