"""Planted bug: the encoder handle never passes the pad mask to the model.

The commonest BERT misuse: calling the model without ``attention_mask``, so real tokens attend to the
pad tokens. Rejected by: encoder.model-padding-invariance (check ``encoder.padding-invariance``).
"""

from torch import Tensor, nn

from transformer_conformance.mutants._encoder import EncoderMutantBase

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encoder.padding-invariance", "encoder.reference")


class EncoderPadMaskDroppedMutant(EncoderMutantBase):
    """See the module docstring."""

    name = "mutant.encoder-pad-mask-dropped"

    def run(self, model: nn.Module, ids: Tensor, pad_mask: Tensor | None) -> Tensor:
        """The model on ``ids`` with no mask (the bug)."""
        return super().run(model, ids, None)


def make() -> EncoderPadMaskDroppedMutant:
    """Factory for ``--impl mutant.encoder-pad-mask-dropped``."""
    return EncoderPadMaskDroppedMutant()
