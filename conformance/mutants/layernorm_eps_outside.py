"""Planted bug: LayerNorm adds eps outside the square root, ``(x - mean) / (sqrt(var) + eps)``.

Indistinguishable for large variances; rows whose variance is comparable to eps expose it.
Rejected by: layernorm.formula (check ``layernorm.differential``).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("layernorm.differential",)


class LayerNormEpsOutsideMutant(ReferenceAdapter):
    """LayerNorm with ``sqrt(var) + eps``."""

    name = "mutant.layernorm-eps-outside"
    capabilities = frozenset({Capability.LAYER_NORM})

    def build_layer_norm(
        self, d: int, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[[Tensor], Tensor]:
        """(x - mean) / (sqrt(biased var) + eps) * weight + bias."""
        weight = torch.ones(d, device=device, dtype=dtype) if state is None else state["weight"]
        bias = torch.zeros(d, device=device, dtype=dtype) if state is None else state["bias"]
        eps = self.conventions.layer_norm_eps

        def run(x: Tensor) -> Tensor:
            work = x.double()
            var = work.var(dim=-1, keepdim=True, unbiased=False)
            y = (work - work.mean(dim=-1, keepdim=True)) / (torch.sqrt(var) + eps)  # the bug
            return (y * weight.double() + bias.double()).to(x.dtype)

        return run


def make() -> LayerNormEpsOutsideMutant:
    """Factory for ``--impl mutant.layernorm-eps-outside``."""
    return LayerNormEpsOutsideMutant()
