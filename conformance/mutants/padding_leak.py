"""Planted bug: the first sample's padding mask is applied to every sample of the batch.

A classic indexing slip (``pad_mask[0]`` where ``pad_mask`` was meant): samples of other lengths get
someone else's padding, so a sample's logits depend on which sample sits first in the batch.
Rejected by: batch.independence (check ``lm.batch-independence``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import DecoderOnlyLM
from transformer_conformance.targets.reference import LMHandle, ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.batch-independence", "lm.cache-with-padding", "lm.reference")


class LeakyHandle(LMHandle):
    """LMHandle that broadcasts sample 0's padding mask over the batch."""

    def logits(self, ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """Logits with every sample masked like sample 0 (the bug)."""
        if pad_mask is not None:
            pad_mask = pad_mask[0].expand_as(pad_mask)
        return super().logits(ids, pad_mask)


class PaddingLeakMutant(ReferenceAdapter):
    """The reference LM with one sample's padding leaking into the others."""

    name = "mutant.padding-leak"
    capabilities = frozenset({Capability.DECODER_LM})

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """LeakyHandle over the reference LM."""
        return LeakyHandle(_build(lambda: DecoderOnlyLM(config), state, device, dtype))


def make() -> PaddingLeakMutant:
    """Factory for ``--impl mutant.padding-leak``."""
    return PaddingLeakMutant()
