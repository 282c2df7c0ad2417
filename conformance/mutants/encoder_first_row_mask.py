"""Planted bug: the first sample's pad mask is applied to every sample of the batch.

A batching helper that builds one mask from ``pad_mask[0]`` and broadcasts it, correct only when all
rows have the same length. Rejected by: batch.independence (check ``encoder.batch-independence``).
"""

from torch import Tensor, nn

from transformer_conformance.mutants._encoder import EncoderMutantBase

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encoder.batch-independence",)


class EncoderFirstRowMaskMutant(EncoderMutantBase):
    """See the module docstring."""

    name = "mutant.encoder-first-row-mask"

    def run(self, model: nn.Module, ids: Tensor, pad_mask: Tensor | None) -> Tensor:
        """The model with ``pad_mask[0]`` for every row (the bug)."""
        mask = None if pad_mask is None else pad_mask[:1].expand_as(pad_mask)
        return super().run(model, ids, mask)


def make() -> EncoderFirstRowMaskMutant:
    """Factory for ``--impl mutant.encoder-first-row-mask``."""
    return EncoderFirstRowMaskMutant()
