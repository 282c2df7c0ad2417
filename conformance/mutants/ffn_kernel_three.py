"""Planted bug: the FFN is ported as "two convolutions" but the first one gets kernel size 3
(padding 1) instead of 1. The canonical W_1 is loaded into the centre tap; the two side taps keep
their (seeded) random initialisation, so each position also reads its neighbours.

Rejected by: ffn.position-wise (check ``ffn.position-wise``).
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.ffn import PositionWiseFFN
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("ffn.position-wise",)


class FfnKernelThreeMutant(ReferenceAdapter):
    """Reference FFN whose first layer also reads the neighbouring positions."""

    name = "mutant.ffn-kernel-three"
    capabilities = frozenset({Capability.FFN})

    def build_ffn(
        self,
        d_model: int,
        d_ff: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[[Tensor], Tensor]:
        """The reference FFN's weights, used with the bug."""
        module = _build(lambda: PositionWiseFFN(d_model, d_ff), state, device, dtype)
        assert isinstance(module, PositionWiseFFN)
        gen = torch.Generator().manual_seed(0)
        side = torch.randn(2, d_ff, d_model, generator=gen) / d_model**0.5
        left, right = side.to(device=device, dtype=dtype)

        def run(x: Tensor) -> Tensor:
            padded = F.pad(x, (0, 0, 1, 1))  # one zero position before and after, along the length
            pre = module.w_1(x) + padded[:, :-2] @ left.T + padded[:, 2:] @ right.T
            out: Tensor = module.w_2(F.relu(pre))
            return out

        return run


def make() -> FfnKernelThreeMutant:
    """Factory for ``--impl mutant.ffn-kernel-three``."""
    return FfnKernelThreeMutant()
