"""Planted bug: the encoder applies a causal mask to its self-attention.

An encoder assembled from decoder-only code that keeps ``is_causal=True``: position i never sees
later tokens. Padding, batch and determinism are intact. Rejected by: encoder.model-bidirectional
(check ``encoder.bidirectional``).
"""

from typing import Any

from torch import nn

from transformer_conformance.mutants._encoder import EncoderMutantBase
from transformer_conformance.reference.variant_encdec import VariantEncoder

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encoder.bidirectional", "encoder.reference")


class EncoderCausalMaskMutant(EncoderMutantBase):
    """See the module docstring."""

    name = "mutant.encoder-causal-mask"

    def model(self, config: Any) -> nn.Module:
        """A ``VariantEncoder`` whose stack is causal (the bug)."""
        model = VariantEncoder(config)
        model.encoder.causal = True
        return model


def make() -> EncoderCausalMaskMutant:
    """Factory for ``--impl mutant.encoder-causal-mask``."""
    return EncoderCausalMaskMutant()
