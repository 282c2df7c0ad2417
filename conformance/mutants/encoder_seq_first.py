"""Planted bug: the encoder handle returns its hidden states sequence-first, [l, b, d_model].

A target built on a seq-first stack (``nn.TransformerEncoder`` without ``batch_first``) that forgets
to transpose back. Rejected by: encoder.output-per-position (check ``encoder.shape``).
"""

from torch import Tensor, nn

from transformer_conformance.mutants._encoder import EncoderMutantBase

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encoder.shape",)


class EncoderSeqFirstMutant(EncoderMutantBase):
    """See the module docstring."""

    name = "mutant.encoder-seq-first"

    def run(self, model: nn.Module, ids: Tensor, pad_mask: Tensor | None) -> Tensor:
        """The hidden states transposed to [l, b, d_model] (the bug)."""
        return super().run(model, ids, pad_mask).transpose(0, 1)


def make() -> EncoderSeqFirstMutant:
    """Factory for ``--impl mutant.encoder-seq-first``."""
    return EncoderSeqFirstMutant()
