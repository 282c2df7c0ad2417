"""Planted bug: the encoder layer ends with a bare ``.squeeze()`` (meant to drop a stray singleton axis).

For a batch of one sample of length 1 the output ``[1, 1, d_model]`` collapses to ``[d_model]``: a
single-token input no longer gives one vector per position.
Rejected by: encoder.output-per-position (check ``encoder_layer.shape``).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.encoder import EncoderLayer
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encoder_layer.shape",)


class EncoderLayerSqueezedMutant(ReferenceAdapter):
    """The reference encoder layer whose output is squeezed."""

    name = "mutant.encoder-layer-squeezed"
    capabilities = frozenset({Capability.ENCODER_LAYER})

    def build_encoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """(x, pad_mask) -> layer(x, pad_mask).squeeze() (the bug)."""
        module = _build(lambda: EncoderLayer(config), state, device, dtype)

        def run(x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
            out: Tensor = module(x, pad_mask)
            return out.squeeze()

        return run


def make() -> EncoderLayerSqueezedMutant:
    """Factory for ``--impl mutant.encoder-layer-squeezed``."""
    return EncoderLayerSqueezedMutant()
