"""Planted bug: the causal mask is only built on the code path that has a target padding mask
(``if tgt_pad is not None: mask = causal & padding``), so an unpadded batch attends to the future.

Padded batches (training with ragged lengths) are right; a plain batch, or inference without a
padding mask, lets every position read later tokens.
Rejected by: mask.causal.future-blind (check ``decoder_layer.causality``).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants.decoder_layer_cross_sources_swapped import build
from transformer_conformance.reference.decoder import DecoderLayer, self_attention_mask
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("decoder_layer.causality",)


class CausalOnlyWithPaddingDecoderLayer(DecoderLayer):
    """DecoderLayer whose self-attention is causal only when ``tgt_pad`` is given."""

    def self_attention_mask(
        self, num_q: int, num_past: int, key_pad: Tensor | None, device: torch.device
    ) -> Tensor:
        """The bug: without ``key_pad`` every key is visible (an all-True mask)."""
        if key_pad is None:
            return torch.ones(num_q, num_past + num_q, dtype=torch.bool, device=device)
        return self_attention_mask(num_q, num_past, key_pad, device)


class DecoderLayerCausalOnlyWithPaddingMutant(ReferenceAdapter):
    """The reference decoder layer that forgets the causal mask on unpadded input."""

    name = "mutant.decoder-layer-causal-only-with-padding"
    capabilities = frozenset({Capability.DECODER_LAYER})

    def build_decoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """``CausalOnlyWithPaddingDecoderLayer`` with the given weights."""
        return build(lambda: CausalOnlyWithPaddingDecoderLayer(config), state, device, dtype)


def make() -> DecoderLayerCausalOnlyWithPaddingMutant:
    """Factory for ``--impl mutant.decoder-layer-causal-only-with-padding``."""
    return DecoderLayerCausalOnlyWithPaddingMutant()
