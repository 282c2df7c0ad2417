"""Planted bug: the decoder adds positional encodings to the memory before cross-attention.

The memory already carries the source positions it needs in its content; adding positions again
inside ``decode`` gives each memory slot a positional bias, so the cross-attention no longer treats
the memory as a set. Rejected by: attention.cross.memory-permutation-invariant
(check ``encdec.memory-permutation``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import EncoderDecoder, positions
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encdec.memory-permutation", "encdec.reference")


class PositionedMemory(EncoderDecoder):
    """EncoderDecoder whose decoder sees memory + positions (the bug)."""

    def _positioned(self, memory: Tensor) -> Tensor:
        return memory + positions(self.config, self.src_pos_embed, memory.shape[1], 0, memory)

    def decode(
        self, tgt: Tensor, memory: Tensor, src_pad: Tensor | None = None, tgt_pad: Tensor | None = None
    ) -> Tensor:
        """Teacher-forced logits against memory + positions."""
        logits: Tensor = super().decode(tgt, self._positioned(memory), src_pad, tgt_pad)
        return logits

    def step(
        self,
        tgt_chunk: Tensor,
        memory: Tensor,
        cache: Any,
        src_pad: Tensor | None = None,
        tgt_pad_chunk: Tensor | None = None,
    ) -> Tensor:
        """Cached step against memory + positions."""
        logits: Tensor = super().step(tgt_chunk, self._positioned(memory), cache, src_pad, tgt_pad_chunk)
        return logits


class EncdecMemoryPositionsMutant(ReferenceAdapter):
    """The reference encoder-decoder with a positional bias on the memory."""

    name = "mutant.encdec-memory-positions"
    capabilities = frozenset({Capability.ENCODER_DECODER})

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """``PositionedMemory``."""
        return _build(lambda: PositionedMemory(config), state, device, dtype)


def make() -> EncdecMemoryPositionsMutant:
    """Factory for ``--impl mutant.encdec-memory-positions``."""
    return EncdecMemoryPositionsMutant()
