"""Planted bug: the LM returns its logits as ``[batch, vocab, length]``.

``F.cross_entropy`` wants the class axis second, so the model transposes its logits itself; every
caller expecting ``[batch, length, vocab]`` then reads the wrong axis.
Rejected by: output.projection (check ``lm.shape``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import DecoderOnlyLM
from transformer_conformance.targets.reference import LMHandle, ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.shape",)


class TransposedHandle(LMHandle):
    """LMHandle whose logits come back with the vocabulary axis second (the bug)."""

    def logits(self, ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """Teacher-forced logits, transposed to [b, vocab, l]."""
        return super().logits(ids, pad_mask).transpose(1, 2)

    def step(self, ids_chunk: Tensor, cache: Any, pad_mask_chunk: Tensor | None = None) -> Tensor:
        """Step logits, transposed to [b, vocab, chunk]."""
        return super().step(ids_chunk, cache, pad_mask_chunk).transpose(1, 2)


class LMLogitsTransposedMutant(ReferenceAdapter):
    """The reference LM with cross-entropy-layout logits."""

    name = "mutant.lm-logits-transposed"
    capabilities = frozenset({Capability.DECODER_LM})

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """TransposedHandle over the reference LM."""
        return TransposedHandle(_build(lambda: DecoderOnlyLM(config), state, device, dtype))


def make() -> LMLogitsTransposedMutant:
    """Factory for ``--impl mutant.lm-logits-transposed``."""
    return LMLogitsTransposedMutant()
