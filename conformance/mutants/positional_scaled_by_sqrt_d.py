"""Planted bug: the sqrt(d_model) factor meant for the token embeddings is applied to the positional
table instead.

The table still shifts by rotations (scaled), but its entries reach sqrt(d_model), not 1.
Rejected by: positional.sinusoidal.bounded (check ``positional.sinusoidal.bounded``).
"""

import math

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.positional import sinusoidal_encoding
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("positional.sinusoidal.bounded",)


class PositionalScaledBySqrtDMutant(ReferenceAdapter):
    """The reference table times sqrt(d_model)."""

    name = "mutant.positional-scaled-by-sqrt-d"
    capabilities = frozenset({Capability.POSITIONAL})

    def positional_table(
        self, num_positions: int, d_model: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """The bug: ``table * sqrt(d_model)``."""
        return sinusoidal_encoding(num_positions, d_model, dtype=dtype, device=device) * math.sqrt(d_model)


def make() -> PositionalScaledBySqrtDMutant:
    """Factory for ``--impl mutant.positional-scaled-by-sqrt-d``."""
    return PositionalScaledBySqrtDMutant()
