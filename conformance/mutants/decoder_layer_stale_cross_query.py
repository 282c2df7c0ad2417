"""Planted bug: the cross-attention sublayer reads the layer's *input* instead of the self-attention
sublayer's output (a variable not reassigned: ``y = self_block(x); z = cross_block(x)``).

The self-attention result is computed and thrown away; shapes, masks, causality and the memory
handling all still look right, only the numbers differ from the specified layer.
Rejected by: attention.cross.sources (check ``decoder_layer.reference``).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants.decoder_layer_cross_sources_swapped import build
from transformer_conformance.reference.decoder import DecoderLayer
from transformer_conformance.reference.sublayer import residual_sublayer
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("decoder_layer.reference",)


class StaleCrossQueryDecoderLayer(DecoderLayer):
    """DecoderLayer whose cross-attention sublayer starts again from the layer input."""

    def forward(  # type: ignore[override]
        self, x: Tensor, memory: Tensor, tgt_pad: Tensor | None = None, mem_pad: Tensor | None = None
    ) -> Tensor:
        """The bug: ``after_cross`` is computed from ``x``, not from ``after_self``."""
        placement = self.config.norm_placement

        def self_part(h: Tensor) -> Tensor:
            return self.causal_self_attention(h, tgt_pad, None)

        def cross_part(h: Tensor) -> Tensor:
            return self.cross_attention(h, memory, mem_pad, None, 0)

        after_self = residual_sublayer(x, self_part, self.norm_1, placement=placement, dropout=self.dropout)
        del after_self  # computed, then never used
        after_cross = residual_sublayer(x, cross_part, self.norm_2, placement=placement, dropout=self.dropout)
        out: Tensor = residual_sublayer(
            after_cross, self.ffn, self.norm_3, placement=placement, dropout=self.dropout
        )
        return out


class DecoderLayerStaleCrossQueryMutant(ReferenceAdapter):
    """The reference decoder layer with the stale cross-attention input."""

    name = "mutant.decoder-layer-stale-cross-query"
    capabilities = frozenset({Capability.DECODER_LAYER})

    def build_decoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """``StaleCrossQueryDecoderLayer`` with the given weights."""
        return build(lambda: StaleCrossQueryDecoderLayer(config), state, device, dtype)


def make() -> DecoderLayerStaleCrossQueryMutant:
    """Factory for ``--impl mutant.decoder-layer-stale-cross-query``."""
    return DecoderLayerStaleCrossQueryMutant()
