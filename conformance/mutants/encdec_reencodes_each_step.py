"""Planted bug: every decoding step encodes the source again instead of reusing the memory.

The classic generation loop that calls ``model(src, tgt_so_far)`` at each step: the handle remembers the
last source it encoded and, in ``step()``, runs the encoder on it again and re-projects the
cross-attention keys and values. The logits are right (the encoder is deterministic), so no numeric
check notices; only the cost grows. Rejected by: kvcache.cross-computed-once (check
``encdec.encodes-once``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import EncoderDecoder
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encdec.encodes-once",)


class ReencodingEncoderDecoder(EncoderDecoder):
    """EncoderDecoder whose ``step`` re-encodes the last encoded source (the bug)."""

    def encode(self, src: Tensor, src_pad: Tensor | None = None) -> Tensor:
        """The memory, remembering the source for the steps."""
        self.last_source = (src, src_pad)
        memory: Tensor = super().encode(src, src_pad)
        return memory

    def step(
        self,
        tgt_chunk: Tensor,
        memory: Tensor,
        cache: Any,
        src_pad: Tensor | None = None,
        tgt_pad_chunk: Tensor | None = None,
    ) -> Tensor:
        """Encode the source again, drop the cached cross-attention K/V, then step."""
        src, pad = self.last_source
        fresh = self.encode(src, pad)
        cache.cross_attn = [None] * len(cache.cross_attn)
        logits: Tensor = super().step(tgt_chunk, fresh, cache, src_pad, tgt_pad_chunk)
        return logits


class EncdecReencodesEachStepMutant(ReferenceAdapter):
    """The reference encoder-decoder with a generation loop that re-encodes the source."""

    name = "mutant.encdec-reencodes-each-step"
    capabilities = frozenset({Capability.ENCODER_DECODER})

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """``ReencodingEncoderDecoder``."""
        return _build(lambda: ReencodingEncoderDecoder(config), state, device, dtype)


def make() -> EncdecReencodesEachStepMutant:
    """Factory for ``--impl mutant.encdec-reencodes-each-step``."""
    return EncdecReencodesEachStepMutant()
