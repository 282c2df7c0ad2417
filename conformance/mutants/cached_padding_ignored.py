"""Planted bug: the cached step silently ignores the pad mask of its chunk.

``step(ids_chunk, cache, pad_mask_chunk)`` accepts the mask but drops it, so the pad positions of a
padded prompt enter the KV cache as ordinary keys and every later query attends to them. The
uncached forward (which honours ``pad_mask``) and unpadded cached decoding are untouched.
Rejected by: kvcache.equals-recompute / mask.padding.invariance (check ``lm.cache-with-padding``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import DecoderOnlyLM
from transformer_conformance.targets.reference import LMHandle, ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.cache-with-padding",)


class PadBlindStepHandle(LMHandle):
    """The reference LM handle whose ``step`` drops ``pad_mask_chunk`` (the bug)."""

    def step(self, ids_chunk: Tensor, cache: Any, pad_mask_chunk: Tensor | None = None) -> Tensor:
        """Logits of the chunk on ``cache``, ignoring which of its positions are padding."""
        out: Tensor = self.model.step(ids_chunk, cache)
        return out


class CachedPaddingIgnoredMutant(ReferenceAdapter):
    """The reference LM with a pad-blind cached ``step``."""

    name = "mutant.cached-padding-ignored"
    capabilities = frozenset({Capability.DECODER_LM})

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """PadBlindStepHandle over the reference ``DecoderOnlyLM``."""
        return PadBlindStepHandle(_build(lambda: DecoderOnlyLM(config), state, device, dtype))


def make() -> CachedPaddingIgnoredMutant:
    """Factory for ``--impl mutant.cached-padding-ignored``."""
    return CachedPaddingIgnoredMutant()
