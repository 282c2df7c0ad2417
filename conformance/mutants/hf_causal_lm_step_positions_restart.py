"""Planted bug: the generic transformers adapter's cached step forgets the cache offset of positions.

``position_ids`` are computed from the new chunk's mask alone (``cumsum(chunk_mask) - 1``), so every
step restarts at position 0 instead of continuing after the cached tokens -- rotary positions of the
keys and queries then disagree with the full forward. The uncached forward is untouched. The model is
transformers' Llama (``hf-causal-lm:llama``, RoPE) at tiny size.
Rejected by: kvcache.equals-recompute (check ``lm.cache-equals-recompute``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.targets import hf_causal_lm
from transformer_conformance.targets.hf_causal_lm import (
    CausalLMCache,
    CausalLMHandle,
    HFCausalLMAdapter,
    generate_positions,
)

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.cache-equals-recompute",)


class PositionsRestartHandle(CausalLMHandle):
    """``_run`` counts positions within the chunk only (the bug)."""

    def _run(self, ids: Tensor, mask: Tensor, cache: CausalLMCache | None) -> Tensor:
        """The model on ``ids`` with positions counted from the chunk's first slot."""
        kwargs: dict[str, Any] = {"attention_mask": mask, "use_cache": cache is not None}
        kwargs["position_ids"] = generate_positions(mask[:, -ids.shape[1] :])
        if cache is not None and cache.kv is not None:
            kwargs[self.cache_kwarg] = cache.kv
        with torch.no_grad():
            out: Any = self.model(input_ids=ids, **kwargs)
        if cache is not None:
            cache.kv = out.cache
        logits: Tensor = out.logits
        return logits


class PositionsRestartMutant(HFCausalLMAdapter):
    """transformers' Llama behind a handle whose cached steps restart positions at 0."""

    handle_class = PositionsRestartHandle


def make() -> PositionsRestartMutant:
    """Factory for ``--impl mutant.hf-causal-lm-step-positions-restart`` (needs ``transformers``)."""
    hf_causal_lm.make("llama")
    return PositionsRestartMutant("llama")
