"""Planted bug: the decoder masks every sample's memory with the first sample's source padding.

An indexing slip (``src_pad[0]`` where ``src_pad`` was meant) in the cross-attention mask: samples of
other source lengths see someone else's padding, so a sample's logits depend on the sample that sits
first in the batch. Rejected by: batch.independence (check ``encdec.batch-independence``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import EncoderDecoder
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encdec.batch-independence", "encdec.reference")


def _first(src_pad: Tensor | None) -> Tensor | None:
    return None if src_pad is None else src_pad[0].expand_as(src_pad)


class LeakySourcePadding(EncoderDecoder):
    """EncoderDecoder whose cross-attention uses sample 0's source padding for all (the bug)."""

    def decode(
        self, tgt: Tensor, memory: Tensor, src_pad: Tensor | None = None, tgt_pad: Tensor | None = None
    ) -> Tensor:
        """Teacher-forced logits with sample 0's source padding everywhere."""
        logits: Tensor = super().decode(tgt, memory, _first(src_pad), tgt_pad)
        return logits

    def step(
        self,
        tgt_chunk: Tensor,
        memory: Tensor,
        cache: Any,
        src_pad: Tensor | None = None,
        tgt_pad_chunk: Tensor | None = None,
    ) -> Tensor:
        """Cached step with sample 0's source padding everywhere."""
        logits: Tensor = super().step(tgt_chunk, memory, cache, _first(src_pad), tgt_pad_chunk)
        return logits


class EncdecSrcPaddingLeakMutant(ReferenceAdapter):
    """The reference encoder-decoder with one sample's source padding leaking into the others."""

    name = "mutant.encdec-src-padding-leak"
    capabilities = frozenset({Capability.ENCODER_DECODER})

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """``LeakySourcePadding``."""
        return _build(lambda: LeakySourcePadding(config), state, device, dtype)


def make() -> EncdecSrcPaddingLeakMutant:
    """Factory for ``--impl mutant.encdec-src-padding-leak``."""
    return EncdecSrcPaddingLeakMutant()
