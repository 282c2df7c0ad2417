"""Planted bug: the encoder multiplies its token embedding by ``sqrt(d_model)`` whatever the config says.

Self-consistent (padding, batch, bidirectionality and determinism all hold), so only the differential
check against the reference with the same weights sees it. Rejected by: encoder.output-per-position
(check ``encoder.reference``).
"""

from dataclasses import replace
from typing import Any

from torch import nn

from transformer_conformance.mutants._encoder import EncoderMutantBase
from transformer_conformance.reference.variant_encdec import VariantEncoder

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encoder.reference",)


class EncoderEmbeddingScaledMutant(EncoderMutantBase):
    """See the module docstring."""

    name = "mutant.encoder-embedding-scaled"

    def model(self, config: Any) -> nn.Module:
        """A ``VariantEncoder`` of the config with ``scale_embedding=True`` (the bug)."""
        return VariantEncoder(replace(config, scale_embedding=True))


def make() -> EncoderEmbeddingScaledMutant:
    """Factory for ``--impl mutant.encoder-embedding-scaled``."""
    return EncoderEmbeddingScaledMutant()
