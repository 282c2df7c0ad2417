"""Planted bug: the decoder's attentions flatten batch and heads to ``[b * h, ...]`` sample-major but
tile the masks with ``mask.repeat(h, 1, 1)`` instead of ``mask.repeat_interleave(h, dim=0)``.

Head ``j`` of sample ``i`` uses the target and memory padding of sample ``(i * h + j) % b``, so a
sample's output depends on its neighbours' lengths (alone, b = 1, it is right).
Rejected by: batch.independence (check ``decoder_layer.batch-independence``).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants.decoder_layer_cross_sources_swapped import build
from transformer_conformance.mutants.encoder_layer_head_mask_repeat import RepeatMaskMHA
from transformer_conformance.reference.decoder import DecoderLayer
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("decoder_layer.batch-independence",)


class RepeatMaskDecoderLayer(DecoderLayer):
    """DecoderLayer whose two attentions are ``RepeatMaskMHA`` (same parameter names)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.self_attn = RepeatMaskMHA(config.d_model, config.num_heads)
        self.cross_attn = RepeatMaskMHA(config.d_model, config.num_heads)


class DecoderLayerHeadMaskRepeatMutant(ReferenceAdapter):
    """The reference decoder layer with the [b * h] mask tiling bug."""

    name = "mutant.decoder-layer-head-mask-repeat"
    capabilities = frozenset({Capability.DECODER_LAYER})

    def build_decoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """``RepeatMaskDecoderLayer`` with the given weights."""
        return build(lambda: RepeatMaskDecoderLayer(config), state, device, dtype)


def make() -> DecoderLayerHeadMaskRepeatMutant:
    """Factory for ``--impl mutant.decoder-layer-head-mask-repeat``."""
    return DecoderLayerHeadMaskRepeatMutant()
