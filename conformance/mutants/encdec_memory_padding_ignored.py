"""Planted bug: the decoder's cross-attention ignores the source padding.

The encoder masks its padding keys, but ``decode`` / ``step`` never pass ``src_pad`` on as the
memory's key padding (the forgotten ``memory_key_padding_mask`` of ``nn.TransformerDecoder``): the
decoder attends to the memory rows of pad positions, which depend on whatever ids sit there.
Rejected by: mask.padding.invariance (check ``encdec.padding-invariance``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import EncoderDecoder
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encdec.padding-invariance", "encdec.reference")


class UnmaskedMemory(EncoderDecoder):
    """EncoderDecoder whose decoder sees every memory position (the bug)."""

    def decode(
        self, tgt: Tensor, memory: Tensor, src_pad: Tensor | None = None, tgt_pad: Tensor | None = None
    ) -> Tensor:
        """Teacher-forced logits, ``src_pad`` dropped."""
        logits: Tensor = super().decode(tgt, memory, None, tgt_pad)
        return logits

    def step(
        self,
        tgt_chunk: Tensor,
        memory: Tensor,
        cache: Any,
        src_pad: Tensor | None = None,
        tgt_pad_chunk: Tensor | None = None,
    ) -> Tensor:
        """Cached step, ``src_pad`` dropped."""
        logits: Tensor = super().step(tgt_chunk, memory, cache, None, tgt_pad_chunk)
        return logits


class EncdecMemoryPaddingIgnoredMutant(ReferenceAdapter):
    """The reference encoder-decoder without a memory key padding mask."""

    name = "mutant.encdec-memory-padding-ignored"
    capabilities = frozenset({Capability.ENCODER_DECODER})

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """``UnmaskedMemory``."""
        return _build(lambda: UnmaskedMemory(config), state, device, dtype)


def make() -> EncdecMemoryPaddingIgnoredMutant:
    """Factory for ``--impl mutant.encdec-memory-padding-ignored``."""
    return EncdecMemoryPaddingIgnoredMutant()
