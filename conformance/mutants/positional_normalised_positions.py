"""Planted bug: positions are normalised by the table length (pos / num_positions, as some
vision models do) before entering the sinusoids.

Bounded and of the right shape, but row p of a short table differs from row p of a long one.
Rejected by: positional.sinusoidal.any-length (check ``positional.sinusoidal.any-length``).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("positional.sinusoidal.any-length",)


class PositionalNormalisedPositionsMutant(ReferenceAdapter):
    """Interleaved sin/cos table over positions scaled to [0, 1)."""

    name = "mutant.positional-normalised-positions"
    capabilities = frozenset({Capability.POSITIONAL})

    def positional_table(
        self, num_positions: int, d_model: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """PE[pos, 2i] = sin((pos / n) / 10000^(2i/d)), PE[pos, 2i+1] = cos(...)."""
        pos = torch.arange(num_positions, dtype=torch.float64, device=device)[:, None] / num_positions
        pair = torch.arange(d_model // 2, dtype=torch.float64, device=device)
        angle = pos / 10000.0 ** (2 * pair / d_model)
        table = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).reshape(num_positions, d_model)
        return table.to(dtype)


def make() -> PositionalNormalisedPositionsMutant:
    """Factory for ``--impl mutant.positional-normalised-positions``."""
    return PositionalNormalisedPositionsMutant()
