"""Planted bug: the decoder layer's self- and cross-attention are the textbook
``softmax(masked_fill(scores, -inf)) @ V``.

Masked weights are exactly 0, so finite padding of any size vanishes, but NaN in a padding row of V
(e.g. the embedding of a NaN-initialised pad id) reaches every real position through ``0 * NaN = NaN``.
Rejected by: mask.padding.invariance (check ``decoder_layer.padding-nan``).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants.decoder_layer_cross_sources_swapped import build
from transformer_conformance.mutants.encoder_layer_textbook_attention import TextbookMHA
from transformer_conformance.reference.decoder import DecoderLayer
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("decoder_layer.padding-nan",)


class TextbookDecoderLayer(DecoderLayer):
    """DecoderLayer whose two attentions are ``TextbookMHA`` (same parameter names)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.self_attn = TextbookMHA(config.d_model, config.num_heads)
        self.cross_attn = TextbookMHA(config.d_model, config.num_heads)


class DecoderLayerTextbookAttentionMutant(ReferenceAdapter):
    """The reference decoder layer with textbook masked attention."""

    name = "mutant.decoder-layer-textbook-attention"
    capabilities = frozenset({Capability.DECODER_LAYER})

    def build_decoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """``TextbookDecoderLayer`` with the given weights."""
        return build(lambda: TextbookDecoderLayer(config), state, device, dtype)


def make() -> DecoderLayerTextbookAttentionMutant:
    """Factory for ``--impl mutant.decoder-layer-textbook-attention``."""
    return DecoderLayerTextbookAttentionMutant()
