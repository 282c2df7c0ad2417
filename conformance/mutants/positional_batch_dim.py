"""Planted bug: the table is returned as the module buffer ``pe.unsqueeze(0)``, ``[1, num_positions,
d_model]``, ready to broadcast over a batch, instead of ``[num_positions, d_model]``.

The values are right.
Rejected by: positional.sinusoidal.any-length (check ``positional.shapes``).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.positional import sinusoidal_encoding
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("positional.shapes",)


class PositionalBatchDimMutant(ReferenceAdapter):
    """The reference table with a leading batch axis."""

    name = "mutant.positional-batch-dim"
    capabilities = frozenset({Capability.POSITIONAL})

    def positional_table(
        self, num_positions: int, d_model: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """The bug: ``unsqueeze(0)``."""
        return sinusoidal_encoding(num_positions, d_model, dtype=dtype, device=device).unsqueeze(0)


def make() -> PositionalBatchDimMutant:
    """Factory for ``--impl mutant.positional-batch-dim``."""
    return PositionalBatchDimMutant()
