"""Planted bug: the cosine columns are filled with the sine too (a copy-paste of the sin line), so
PE[pos, 2i] = PE[pos, 2i+1] = sin(pos / 10000^(2i/d_model)).

Still bounded and of any length, but a sine alone cannot be shifted linearly (sin(a + t) needs
cos(a)): the row of position 0 is all zeros while the row of position k is not, so no matrix M_k takes
PE(pos) to PE(pos + k), and <PE(p), PE(p + k)> now moves with p.
Rejected by: positional.sinusoidal.relative-linear, positional.sinusoidal.offset-dot-product (and
positional.sinusoidal.formula).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.positional import frequencies
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = (
    "positional.sinusoidal.relative-linear",
    "positional.sinusoidal.offset-dot-product",
    "positional.sinusoidal.formula",
)


class PositionalSinOnlyMutant(ReferenceAdapter):
    """Interleaved table whose cosine columns hold the sine."""

    name = "mutant.positional-sin-only"
    capabilities = frozenset({Capability.POSITIONAL})

    def positional_table(
        self, num_positions: int, d_model: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """The bug: ``PE[:, 2i + 1] = sin(...)`` instead of ``cos(...)``."""
        pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
        angle = pos * frequencies(d_model)[None, :]
        table = torch.stack([torch.sin(angle), torch.sin(angle)], dim=-1).reshape(num_positions, d_model)
        return table.to(device=device, dtype=dtype)


def make() -> PositionalSinOnlyMutant:
    """Factory for ``--impl mutant.positional-sin-only``."""
    return PositionalSinOnlyMutant()
