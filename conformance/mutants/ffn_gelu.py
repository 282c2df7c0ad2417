"""Planted bug: the FFN uses GELU (the GPT-2 / BERT default of the library it was copied from)
where the contract, and the canonical weights, assume ReLU.

Shapes and position-wise behaviour are right; the values are not.
Rejected by: ffn.widen-then-project (check ``ffn.differential``).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.ffn import PositionWiseFFN
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("ffn.differential",)


class FfnGeluMutant(ReferenceAdapter):
    """Reference FFN weights under GELU."""

    name = "mutant.ffn-gelu"
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
        module = _build(lambda: PositionWiseFFN(d_model, d_ff, activation="gelu"), state, device, dtype)
        run: Callable[[Tensor], Tensor] = module
        return run


def make() -> FfnGeluMutant:
    """Factory for ``--impl mutant.ffn-gelu``."""
    return FfnGeluMutant()
