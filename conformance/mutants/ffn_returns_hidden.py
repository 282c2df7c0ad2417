"""Planted bug: the FFN returns the wrong tensor, the widened hidden activation relu(W_1 x + b_1)
of width d_ff, instead of its projection W_2(.) + b_2 back to d_model.

Rejected by: ffn.widen-then-project (check ``ffn.shapes``).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.ffn import PositionWiseFFN
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("ffn.shapes",)


class FfnReturnsHiddenMutant(ReferenceAdapter):
    """Reference FFN returning its hidden layer."""

    name = "mutant.ffn-returns-hidden"
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

        def run(x: Tensor) -> Tensor:
            hidden: Tensor = module.hidden(x)  # the bug: W_2 never applied
            return hidden

        return run


def make() -> FfnReturnsHiddenMutant:
    """Factory for ``--impl mutant.ffn-returns-hidden``."""
    return FfnReturnsHiddenMutant()
