"""Planted bug: the generic transformers adapter drops the attention mask when a batch is left-padded.

A hand-written batching helper that only builds ``attention_mask`` for right padding (where causal
attention alone already hides the trailing pads from real tokens) and passes ``None`` otherwise: a
left-padded row's real tokens then attend to the pad slots before them. Right padding and unpadded
inputs are untouched. The model is transformers' Llama (``hf-causal-lm:llama``) at tiny size.
Rejected by: mask.padding.invariance (check ``lm.padding-invariance``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.targets import hf_causal_lm
from transformer_conformance.targets.hf_causal_lm import CausalLMCache, CausalLMHandle, HFCausalLMAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.padding-invariance",)


class LeftPaddingUnmaskedHandle(CausalLMHandle):
    """``_run`` passes no attention mask when the first slot of some row is padding (the bug)."""

    def _run(self, ids: Tensor, mask: Tensor, cache: CausalLMCache | None) -> Tensor:
        """The model on ``ids``; a left-padded mask is replaced by no mask."""
        if bool((mask[:, 0] == 0).any()):
            with torch.no_grad():
                out: Any = self.model(input_ids=ids, use_cache=False)
            logits: Tensor = out.logits
            return logits
        return super()._run(ids, mask, cache)


class LeftPaddingUnmaskedMutant(HFCausalLMAdapter):
    """transformers' Llama behind a handle that forgets the mask of left-padded batches."""

    handle_class = LeftPaddingUnmaskedHandle


def make() -> LeftPaddingUnmaskedMutant:
    """Factory for ``--impl mutant.hf-causal-lm-left-padding-unmasked`` (needs ``transformers``)."""
    hf_causal_lm.make("llama")
    return LeftPaddingUnmaskedMutant("llama")
