"""Planted bug: the loss scores position t against the token at t (no next-token shift).

With this loss a model that copies its input reaches zero loss. Pad targets are ignored correctly,
so the shift is the only bug. Rejected by: loss.shifted-cross-entropy (check ``loss.value``).
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("loss.value",)


class LossNoShiftMutant(ReferenceAdapter):
    """Cross-entropy against the unshifted ids."""

    name = "mutant.loss-no-shift"
    capabilities = frozenset({Capability.LOSS})

    def next_token_loss(self, logits: Tensor, ids: Tensor, pad_id: int | None) -> Tensor:
        """Mean of -log p(ids[:, t]) from logits[:, t] over non-pad targets (the bug: no shift)."""
        work = logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32)
        ignore = -100 if pad_id is None else pad_id
        flat = work.reshape(-1, logits.shape[-1])
        return F.cross_entropy(flat, ids.reshape(-1), ignore_index=ignore).to(logits.dtype)


def make() -> LossNoShiftMutant:
    """Factory for ``--impl mutant.loss-no-shift``."""
    return LossNoShiftMutant()
