"""Planted bug: hf-gpt2's cached step forgets which cached slots were padding.

A common hand-written ``generate`` loop with ``transformers``: the prompt chunk gets its padding mask,
but each later step passes ``attention_mask = ones(b, past + c)``, so the prompt's pad slots in the
``DynamicCache`` become visible keys for every generated token. Unpadded cached decoding and the
uncached forward are untouched. Rejected by: kvcache.equals-recompute / mask.padding.invariance (check
``lm.cache-with-padding``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.targets import hf_gpt2
from transformer_conformance.targets.hf_gpt2 import GPT2Handle, HFGPT2Adapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.cache-with-padding",)


class MaskOfChunkOnlyHandle(GPT2Handle):
    """``step`` masks padding in the current chunk only; past slots are all marked real (the bug)."""

    def step(self, ids_chunk: Tensor, cache: Any, pad_mask_chunk: Tensor | None = None) -> Tensor:
        """Logits of the chunk on ``cache`` with an all-ones mask over the cached slots."""
        past = int(cache.kv.get_seq_length())
        b, c = ids_chunk.shape
        mask = torch.ones(b, past + c, dtype=torch.long, device=ids_chunk.device)
        if pad_mask_chunk is not None:
            mask[:, past:] = pad_mask_chunk.to(torch.long)
        return self._run(
            ids_chunk,
            **self.cache_kwargs(cache),
            attention_mask=mask,
            position_ids=self.positions(ids_chunk, past),
            use_cache=True,
        )


class CacheForgetsPaddingMutant(HFGPT2Adapter):
    """transformers' GPT-2 behind a handle whose cache forgets the prompt's padding."""

    name = "mutant.hf-gpt2-cache-forgets-padding"
    handle_class = MaskOfChunkOnlyHandle


def make() -> CacheForgetsPaddingMutant:
    """Factory for ``--impl mutant.hf-gpt2-cache-forgets-padding`` (needs ``transformers``)."""
    hf_gpt2.make()
    return CacheForgetsPaddingMutant()
