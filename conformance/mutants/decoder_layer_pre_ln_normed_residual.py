"""Planted bug: a pre-LN decoder layer adds each update to the *normalised* stream,
``h = norm(x); x = h + sublayer(h)``, instead of to the raw stream, ``x = x + sublayer(norm(x))``.

The residual path is normalised three times per layer, so the clean identity path that makes pre-LN
stacks train well is gone (the target declares ``norm_placement = "pre"``).
Rejected by: residual.adds-update, residual.post-ln (check ``decoder_layer.residual-placement``).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability, Conventions
from transformer_conformance.mutants.decoder_layer_cross_sources_swapped import build
from transformer_conformance.reference.decoder import DecoderLayer
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("decoder_layer.residual-placement",)


class NormedResidualDecoderLayer(DecoderLayer):
    """Pre-LN DecoderLayer whose residual branch starts from the normalised input."""

    def forward(  # type: ignore[override]
        self, x: Tensor, memory: Tensor, tgt_pad: Tensor | None = None, mem_pad: Tensor | None = None
    ) -> Tensor:
        """Self-attention, cross-attention, FFN, each as ``h = norm(x); x = h + sublayer(h)`` (the bug)."""
        h = self.norm_1(x)
        x = h + self.dropout(self.causal_self_attention(h, tgt_pad, None))
        h = self.norm_2(x)
        x = h + self.dropout(self.cross_attention(h, memory, mem_pad, None, 0))
        h = self.norm_3(x)
        out: Tensor = h + self.dropout(self.ffn(h))
        return out


class DecoderLayerPreLNNormedResidualMutant(ReferenceAdapter):
    """A pre-LN reference decoder layer with the residual taken after the LayerNorm."""

    name = "mutant.decoder-layer-pre-ln-normed-residual"
    capabilities = frozenset({Capability.DECODER_LAYER})
    conventions = Conventions(norm_placement="pre")

    def build_decoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """``NormedResidualDecoderLayer`` with the given weights."""
        return build(lambda: NormedResidualDecoderLayer(config), state, device, dtype)


def make() -> DecoderLayerPreLNNormedResidualMutant:
    """Factory for ``--impl mutant.decoder-layer-pre-ln-normed-residual``."""
    return DecoderLayerPreLNNormedResidualMutant()
