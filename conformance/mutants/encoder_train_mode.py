"""Planted bug: the encoder is left in train mode, so dropout runs at inference.

The model is built and loaded but ``eval()`` is undone (``model.train()``, e.g. by a fine-tuning
helper); with the check's dropout of 0.1 two calls on the same input differ. Rejected by:
determinism.eval (check ``encoder.determinism``).
"""

from typing import Any

from torch import Tensor, nn

from transformer_conformance.mutants._encoder import EncoderMutantBase
from transformer_conformance.reference.variant_encdec import VariantEncoder

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encoder.determinism",)


class EncoderTrainModeMutant(EncoderMutantBase):
    """See the module docstring."""

    name = "mutant.encoder-train-mode"

    def model(self, config: Any) -> nn.Module:
        """A ``VariantEncoder`` (put in train mode at every call, the bug)."""
        return VariantEncoder(config)

    def run(self, model: nn.Module, ids: Tensor, pad_mask: Tensor | None) -> Tensor:
        """The model in train mode."""
        model.train()
        return super().run(model, ids, pad_mask)


def make() -> EncoderTrainModeMutant:
    """Factory for ``--impl mutant.encoder-train-mode``."""
    return EncoderTrainModeMutant()
