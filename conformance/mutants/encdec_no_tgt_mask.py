"""Planted bug: the decoder's self-attention gets no causal mask (the forgotten ``tgt_mask``).

``nn.Transformer`` needs ``tgt_mask=generate_square_subsequent_mask(t)`` passed explicitly; without it
every target position sees the whole target. Token-by-token decoding still runs (a single new query
may see all cached keys), but teacher-forced logits read the future.
Rejected by: mask.causal.future-blind (check ``encdec.causality``), encdec.teacher-forcing /
training.parallel-equals-sequential (check ``encdec.teacher-forcing``), kvcache.equals-recompute
(check ``encdec.cache-equals-recompute``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.decoder import DecoderLayer
from transformer_conformance.reference.masks import key_padding_to_attention_mask
from transformer_conformance.reference.model import EncoderDecoder
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = (
    "encdec.causality",
    "encdec.teacher-forcing",
    "encdec.cache-equals-recompute",
    "encdec.reference",
)


class NoTgtMaskLayer(DecoderLayer):
    """A decoder layer whose self-attention masks padding only (the bug)."""

    def self_attention_mask(
        self, num_q: int, num_past: int, key_pad: Tensor | None, device: torch.device
    ) -> Tensor:
        """Key padding only: every query sees every key."""
        if key_pad is not None:
            return key_padding_to_attention_mask(key_pad)
        return torch.ones(num_q, num_past + num_q, dtype=torch.bool, device=device)


def _model(config: Any) -> EncoderDecoder:
    model = EncoderDecoder(config)
    for layer in model.decoder.layers:
        layer.__class__ = NoTgtMaskLayer
    return model


class EncdecNoTgtMaskMutant(ReferenceAdapter):
    """The reference encoder-decoder without a causal target mask."""

    name = "mutant.encdec-no-tgt-mask"
    capabilities = frozenset({Capability.ENCODER_DECODER})

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """The reference encoder-decoder with ``NoTgtMaskLayer`` layers."""
        return _build(lambda: _model(config), state, device, dtype)


def make() -> EncdecNoTgtMaskMutant:
    """Factory for ``--impl mutant.encdec-no-tgt-mask``."""
    return EncdecNoTgtMaskMutant()
