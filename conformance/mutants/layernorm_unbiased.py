"""Planted bug: LayerNorm divides by the unbiased variance (d - 1) instead of the biased one (d).

Rejected by: layernorm.formula (check ``layernorm.differential``).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("layernorm.differential", "layernorm.zero-mean-unit-var")


class LayerNormUnbiasedMutant(ReferenceAdapter):
    """LayerNorm with ``var(unbiased=True)``."""

    name = "mutant.layernorm-unbiased"
    capabilities = frozenset({Capability.LAYER_NORM})

    def build_layer_norm(
        self, d: int, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[[Tensor], Tensor]:
        """(x - mean) / sqrt(unbiased var + eps) * weight + bias."""
        weight = torch.ones(d, device=device, dtype=dtype) if state is None else state["weight"]
        bias = torch.zeros(d, device=device, dtype=dtype) if state is None else state["bias"]
        eps = self.conventions.layer_norm_eps

        def run(x: Tensor) -> Tensor:
            work = x.double()
            centered = work - work.mean(dim=-1, keepdim=True)
            var = (centered * centered).sum(dim=-1, keepdim=True) / max(d - 1, 1)  # the bug: d - 1
            y = centered / torch.sqrt(var + eps)
            return (y * weight.double() + bias.double()).to(x.dtype)

        return run


def make() -> LayerNormUnbiasedMutant:
    """Factory for ``--impl mutant.layernorm-unbiased``."""
    return LayerNormUnbiasedMutant()
