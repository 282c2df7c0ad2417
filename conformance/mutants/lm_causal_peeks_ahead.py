"""Planted bug: the causal mask is ``tril(diagonal=1)``, so every query also sees the next token.

An off-by-one in the triangle (e.g. ``triu(ones, 1)`` read as the keep-mask's complement one row too
late): training looks excellent, because position t can copy its own target.
Rejected by: mask.causal.future-blind (check ``lm.causality``), training.parallel-equals-sequential
(check ``lm.teacher-forcing``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.decoder import DecoderOnlyLayer
from transformer_conformance.reference.masks import combine_masks, key_padding_to_attention_mask
from transformer_conformance.reference.model import DecoderOnlyLM
from transformer_conformance.targets.reference import LMHandle, ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.causality", "lm.teacher-forcing", "lm.cache-equals-recompute", "lm.reference")


class PeekAheadLayer(DecoderOnlyLayer):
    """A decoder-only layer whose causal mask keeps one key beyond the diagonal."""

    def self_attention_mask(
        self, num_q: int, num_past: int, key_pad: Tensor | None, device: torch.device
    ) -> Tensor:
        """Bottom-right aligned ``key <= query + 1`` (the bug) AND key padding."""
        num_k = num_past + num_q
        keep = torch.ones(num_q, num_k, dtype=torch.bool, device=device).tril(num_past + 1)
        padding = None if key_pad is None else key_padding_to_attention_mask(key_pad)
        mask = combine_masks(keep, padding)
        assert mask is not None
        return mask


def _model(config: Any) -> DecoderOnlyLM:
    model = DecoderOnlyLM(config)
    for layer in model.decoder.layers:
        layer.__class__ = PeekAheadLayer
    return model


class LMCausalPeeksAheadMutant(ReferenceAdapter):
    """The reference LM with an off-by-one causal mask."""

    name = "mutant.lm-causal-peeks-ahead"
    capabilities = frozenset({Capability.DECODER_LM})

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """LMHandle over the reference LM with ``PeekAheadLayer`` layers."""
        return LMHandle(_build(lambda: _model(config), state, device, dtype))


def make() -> LMCausalPeeksAheadMutant:
    """Factory for ``--impl mutant.lm-causal-peeks-ahead``."""
    return LMCausalPeeksAheadMutant()
