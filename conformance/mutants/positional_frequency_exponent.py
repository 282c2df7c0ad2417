"""Planted bug: the frequency of pair i is 1 / 10000^(i / d_model) instead of 1 / 10000^(2i / d_model)
(the pair index used where the column index 2i was meant).

Bounded, any length, and right for d_model = 2; wider tables rotate at the wrong rates. Shifts are
still rotations (other angles) and dot products still depend on the offset only, so only the formula
check sees it.
Rejected by: positional.sinusoidal.formula (check ``positional.sinusoidal.formula``).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("positional.sinusoidal.formula",)


class PositionalFrequencyExponentMutant(ReferenceAdapter):
    """Interleaved sin/cos table with the wrong frequency exponent."""

    name = "mutant.positional-frequency-exponent"
    capabilities = frozenset({Capability.POSITIONAL})

    def positional_table(
        self, num_positions: int, d_model: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """PE[pos, 2i] = sin(pos / 10000^(i/d)), PE[pos, 2i+1] = cos(...)."""
        pos = torch.arange(num_positions, dtype=torch.float64, device=device)[:, None]
        pair = torch.arange(d_model // 2, dtype=torch.float64, device=device)
        angle = pos / 10000.0 ** (pair / d_model)  # the bug: pair, not 2 * pair
        table = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).reshape(num_positions, d_model)
        return table.to(dtype)


def make() -> PositionalFrequencyExponentMutant:
    """Factory for ``--impl mutant.positional-frequency-exponent``."""
    return PositionalFrequencyExponentMutant()
