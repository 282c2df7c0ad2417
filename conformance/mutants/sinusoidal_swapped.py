"""Planted bug: the sinusoidal table puts cos in the sine columns and sin in the cosine columns,
while declaring the interleaved layout (PE[pos, 2i] = sin, PE[pos, 2i+1] = cos).

The table is still bounded and still shifts by rotations (a swap of each pair); only the formula
check, which compares against the declared layout, sees it.
Rejected by: positional.sinusoidal.formula (check ``positional.sinusoidal.formula``).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.positional import sinusoidal_encoding
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("positional.sinusoidal.formula",)


class SinusoidalSwappedMutant(ReferenceAdapter):
    """Interleaved table with each (sin, cos) pair swapped."""

    name = "mutant.sinusoidal-swapped"
    capabilities = frozenset({Capability.POSITIONAL})

    def positional_table(
        self, num_positions: int, d_model: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """The bug: columns 2i and 2i+1 exchanged."""
        table = sinusoidal_encoding(num_positions, d_model, dtype=dtype, device=device)
        return table.reshape(num_positions, d_model // 2, 2).flip(-1).reshape(num_positions, d_model)


def make() -> SinusoidalSwappedMutant:
    """Factory for ``--impl mutant.sinusoidal-swapped``."""
    return SinusoidalSwappedMutant()
