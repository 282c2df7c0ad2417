"""Planted bug: absolute positions run backwards, the last token of the input at the lowest position.

Transformer-XL builds a descending position sequence (``arange(len - 1, -1, -1)``) for its relative
encodings; reused as absolute positions, a token's position depends on how many tokens follow it.
The model stays causal in which tokens it reads, but the logits at position t change with the input
length, so one teacher-forced pass no longer equals running each prefix alone.
Rejected by: training.parallel-equals-sequential (check ``lm.teacher-forcing``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import DecoderOnlyLM, positions
from transformer_conformance.targets.reference import LMHandle, ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.teacher-forcing", "lm.cache-equals-recompute", "lm.reference")


class DescendingPositionsLM(DecoderOnlyLM):
    """DecoderOnlyLM whose positional rows are in descending order (the bug)."""

    def embed_ids(self, ids: Tensor, offset: int = 0) -> Tensor:
        """Token embedding + positions ``offset + l - 1 .. offset`` (reversed)."""
        x: Tensor = self.embed(ids)
        rows = positions(self.config, self.pos_embed, ids.shape[1], offset, x).flip(0)
        dropped: Tensor = self.dropout(x + rows)
        return dropped


class LMPositionsDescendingMutant(ReferenceAdapter):
    """The reference LM with descending absolute positions."""

    name = "mutant.lm-positions-descending"
    capabilities = frozenset({Capability.DECODER_LM})

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """LMHandle over ``DescendingPositionsLM``."""
        return LMHandle(_build(lambda: DescendingPositionsLM(config), state, device, dtype))


def make() -> LMPositionsDescendingMutant:
    """Factory for ``--impl mutant.lm-positions-descending``."""
    return LMPositionsDescendingMutant()
