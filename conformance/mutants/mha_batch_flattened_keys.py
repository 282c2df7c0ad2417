"""Planted bug: a ``reshape`` where a ``transpose`` was meant folds the batch into the key axis, so
every query of the layer attends to the keys and values of every sample in the batch.

With batch size 1 it is exact; with more samples each output mixes in the other samples.
Rejected by: batch.independence (check ``mha.batch-independence``).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants.attention_batch_flattened_keys import batch_flattened_attention
from transformer_conformance.mutants.mha_nan_padding_matmul import reference_mha_with
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mha.batch-independence",)


class MhaBatchFlattenedKeysMutant(ReferenceAdapter):
    """Reference MHA attending over the keys of the whole batch."""

    name = "mutant.mha-batch-flattened-keys"
    capabilities = frozenset({Capability.MHA})

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """Reference MHA with ``batch_flattened_attention``."""
        return reference_mha_with(batch_flattened_attention, d_model, num_heads, state, device, dtype)


def make() -> MhaBatchFlattenedKeysMutant:
    """Factory for ``--impl mutant.mha-batch-flattened-keys``."""
    return MhaBatchFlattenedKeysMutant()
