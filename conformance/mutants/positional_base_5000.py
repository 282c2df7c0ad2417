"""Planted bug: the frequencies use the base 5000 instead of 10000 (a wrong constant), so
PE[pos, 2i] = sin(pos / 5000^(2i/d_model)), PE[pos, 2i+1] = cos(...).

Only the formula is wrong: the table is still made of sin/cos pairs, so every shift is a fixed set of
rotations (positional.sinusoidal.relative-linear holds), <PE(p), PE(p + k)> = sum_i cos(k w_i) still
depends on k only (positional.sinusoidal.offset-dot-product holds), and it is bounded and of any
length. A claim check that compared against the reference's own rotation matrices would blame those
claims too; ``tests/conformance/test_blame.py`` asserts the formula check alone fails.
Rejected by: positional.sinusoidal.formula (check ``positional.sinusoidal.formula``).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.positional import sinusoidal_encoding
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("positional.sinusoidal.formula",)

#: The wrong base.
BASE = 5000.0


class PositionalBase5000Mutant(ReferenceAdapter):
    """Interleaved sin/cos table with the frequency base 5000."""

    name = "mutant.positional-base-5000"
    capabilities = frozenset({Capability.POSITIONAL})

    def positional_table(
        self, num_positions: int, d_model: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """The bug: ``base=5000``."""
        table: Tensor = sinusoidal_encoding(num_positions, d_model, base=BASE, dtype=dtype, device=device)
        return table


def make() -> PositionalBase5000Mutant:
    """Factory for ``--impl mutant.positional-base-5000``."""
    return PositionalBase5000Mutant()
