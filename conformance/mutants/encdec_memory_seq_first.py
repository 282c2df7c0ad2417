"""Planted bug: ``encode`` returns the memory sequence-first, ``[src, batch, d_model]``.

The ``batch_first=False`` layout of ``nn.Transformer`` leaks out of the encoder (its own ``decode``
transposes back, so the model works end to end, but every caller reading the memory gets the
wrong axes). Rejected by: output.projection / encdec.output-length-independent (check ``encdec.shape``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import EncoderDecoder
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encdec.shape",)


class SeqFirstMemory(EncoderDecoder):
    """EncoderDecoder whose memory is [src, batch, d_model] outside the model (the bug)."""

    def encode(self, src: Tensor, src_pad: Tensor | None = None) -> Tensor:
        """The memory, transposed to sequence-first."""
        memory: Tensor = super().encode(src, src_pad)
        return memory.transpose(0, 1)

    def decode(
        self, tgt: Tensor, memory: Tensor, src_pad: Tensor | None = None, tgt_pad: Tensor | None = None
    ) -> Tensor:
        """Teacher-forced logits from a sequence-first memory."""
        logits: Tensor = super().decode(tgt, memory.transpose(0, 1), src_pad, tgt_pad)
        return logits

    def step(
        self,
        tgt_chunk: Tensor,
        memory: Tensor,
        cache: Any,
        src_pad: Tensor | None = None,
        tgt_pad_chunk: Tensor | None = None,
    ) -> Tensor:
        """Cached step from a sequence-first memory."""
        logits: Tensor = super().step(tgt_chunk, memory.transpose(0, 1), cache, src_pad, tgt_pad_chunk)
        return logits


class EncdecMemorySeqFirstMutant(ReferenceAdapter):
    """The reference encoder-decoder with a sequence-first memory."""

    name = "mutant.encdec-memory-seq-first"
    capabilities = frozenset({Capability.ENCODER_DECODER})

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """``SeqFirstMemory``."""
        return _build(lambda: SeqFirstMemory(config), state, device, dtype)


def make() -> EncdecMemorySeqFirstMutant:
    """Factory for ``--impl mutant.encdec-memory-seq-first``."""
    return EncdecMemorySeqFirstMutant()
