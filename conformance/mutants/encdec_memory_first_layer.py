"""Planted bug: the memory is the first encoder layer's output instead of the last one's.

Reading ``outputs[0]`` where ``outputs[-1]`` was meant (or returning from inside the layer loop): the
model is still a consistent function of its inputs, so no metamorphic property notices, but with the
canonical weights the logits are wrong. Rejected by: output.projection (check ``encdec.reference``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.encoder import encoder_layer_outputs
from transformer_conformance.reference.model import EncoderDecoder
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encdec.reference",)


class FirstLayerMemory(EncoderDecoder):
    """EncoderDecoder whose memory comes from encoder layer 0 (the bug)."""

    def encode(self, src: Tensor, src_pad: Tensor | None = None) -> Tensor:
        """The first encoder layer's output (then ``final_norm`` for pre-LN)."""
        memory = encoder_layer_outputs(self.encoder, self.embed_source(src), src_pad)[0]
        if self.encoder.final_norm is not None:
            normed: Tensor = self.encoder.final_norm(memory)
            memory = normed
        return memory


class EncdecMemoryFirstLayerMutant(ReferenceAdapter):
    """The reference encoder-decoder reading the wrong encoder layer."""

    name = "mutant.encdec-memory-first-layer"
    capabilities = frozenset({Capability.ENCODER_DECODER})

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """``FirstLayerMemory``."""
        return _build(lambda: FirstLayerMemory(config), state, device, dtype)


def make() -> EncdecMemoryFirstLayerMutant:
    """Factory for ``--impl mutant.encdec-memory-first-layer``."""
    return EncdecMemoryFirstLayerMutant()
