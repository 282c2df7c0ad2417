"""Planted bug: on a warm KV cache the new tokens get positions one slot too early.

The step embeds its chunk at ``cache.position - 1`` instead of ``cache.position`` (an off-by-one when
reading the cache length), so cached decoding no longer matches recomputing the prefix.
Rejected by: kvcache.equals-recompute (check ``lm.cache-equals-recompute``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import DecoderOnlyLM
from transformer_conformance.targets.reference import LMHandle, ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.cache-equals-recompute",)


class OffsetLM(DecoderOnlyLM):
    """DecoderOnlyLM whose positional offset is off by one on a warm cache."""

    def embed_ids(self, ids: Tensor, offset: int = 0) -> Tensor:
        """Token embedding + positions starting one slot too early once the cache is warm (the bug)."""
        return super().embed_ids(ids, max(offset - 1, 0))


class KVCacheOffsetMutant(ReferenceAdapter):
    """The reference LM with the position offset bug in ``step``."""

    name = "mutant.kv-cache-offset"
    capabilities = frozenset({Capability.DECODER_LM})

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """LMHandle over ``OffsetLM``."""
        return LMHandle(_build(lambda: OffsetLM(config), state, device, dtype))


def make() -> KVCacheOffsetMutant:
    """Factory for ``--impl mutant.kv-cache-offset``."""
    return KVCacheOffsetMutant()
