"""Planted bug: the cached step honours the pad mask only in the prefill on an empty cache.

Written for a ``generate()`` loop, where a padded prompt goes in as one chunk on an empty cache and every
later step is a real token, ``step(ids_chunk, cache, pad_mask_chunk)`` drops ``pad_mask_chunk`` once
the cache is warm. A padded prompt prefilled in several chunks then lets the pads of its later chunks
into the KV cache as ordinary keys; one-chunk padded prefills, unpadded decoding and the uncached
forward are untouched. Rejected by: kvcache.equals-recompute / mask.padding.invariance (check
``lm.cache-with-padding``, whose schedules put padding in chunks on a warm cache).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import DecoderOnlyLM
from transformer_conformance.targets.reference import LMHandle, ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.cache-with-padding",)


class PrefillOnlyPadsHandle(LMHandle):
    """The reference LM handle whose ``step`` passes ``pad_mask_chunk`` on an empty cache only (the bug)."""

    def step(self, ids_chunk: Tensor, cache: Any, pad_mask_chunk: Tensor | None = None) -> Tensor:
        """Logits of the chunk on ``cache``; the chunk's pad mask is used only when nothing is cached."""
        pad = pad_mask_chunk if cache.position == 0 else None
        out: Tensor = self.model.step(ids_chunk, cache, pad)
        return out


class StepPadsPrefillOnlyMutant(ReferenceAdapter):
    """The reference LM whose cached ``step`` forgets padding on a warm cache."""

    name = "mutant.lm-step-pads-prefill-only"
    capabilities = frozenset({Capability.DECODER_LM})

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """PrefillOnlyPadsHandle over the reference ``DecoderOnlyLM``."""
        return PrefillOnlyPadsHandle(_build(lambda: DecoderOnlyLM(config), state, device, dtype))


def make() -> StepPadsPrefillOnlyMutant:
    """Factory for ``--impl mutant.lm-step-pads-prefill-only``."""
    return StepPadsPrefillOnlyMutant()
