"""Planted bug: the encoder-decoder's cached step silently ignores the pad mask of its target chunk.

``step(tgt_chunk, memory, cache, src_pad, tgt_pad_chunk)`` accepts the mask but drops it, so the pad
positions of a padded decoder prompt enter the self-attention cache as ordinary keys and every later
query attends to them. Teacher-forced decoding and unpadded cached decoding are untouched.
Rejected by: encdec.cache-padded-prompts (check ``encdec.cache-with-padding``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import EncoderDecoder
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encdec.cache-with-padding",)


class PadBlindStep(EncoderDecoder):
    """The reference encoder-decoder whose ``step`` drops ``tgt_pad_chunk`` (the bug)."""

    def step(
        self,
        tgt_chunk: Tensor,
        memory: Tensor,
        cache: Any,
        src_pad: Tensor | None = None,
        tgt_pad_chunk: Tensor | None = None,
    ) -> Tensor:
        """Logits of the chunk on ``cache``, ignoring which of its positions are padding."""
        out: Tensor = super().step(tgt_chunk, memory, cache, src_pad, None)
        return out


class EncdecCachedPaddingIgnoredMutant(ReferenceAdapter):
    """The reference encoder-decoder with a pad-blind cached ``step``."""

    name = "mutant.encdec-cached-padding-ignored"
    capabilities = frozenset({Capability.ENCODER_DECODER})

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """``PadBlindStep``."""
        return _build(lambda: PadBlindStep(config), state, device, dtype)


def make() -> EncdecCachedPaddingIgnoredMutant:
    """Factory for ``--impl mutant.encdec-cached-padding-ignored``."""
    return EncdecCachedPaddingIgnoredMutant()
