"""Planted bug: LayerNorm takes the row mean and variance without ``keepdim=True``, so ``x - mean``
broadcasts ``[..., d]`` against ``[...]``.

A 1-d input works; batched inputs raise, or (when the last axis happens to match) broadcast into
a wrong shape.
Rejected by: layernorm.formula (check ``layernorm.shapes``).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("layernorm.shapes",)


class LayerNormNoKeepdimMutant(ReferenceAdapter):
    """LayerNorm whose statistics lose the reduced axis."""

    name = "mutant.layernorm-no-keepdim"
    capabilities = frozenset({Capability.LAYER_NORM})

    def build_layer_norm(
        self, d: int, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[[Tensor], Tensor]:
        """(x - mean) / sqrt(var + eps) * weight + bias with ``mean``/``var`` of shape [...]."""
        weight = torch.ones(d, device=device, dtype=dtype) if state is None else state["weight"]
        bias = torch.zeros(d, device=device, dtype=dtype) if state is None else state["bias"]
        eps = self.conventions.layer_norm_eps

        def run(x: Tensor) -> Tensor:
            mean = x.mean(dim=-1)  # the bug: no keepdim
            var = x.var(dim=-1, unbiased=False)
            return (x - mean) / torch.sqrt(var + eps) * weight + bias

        return run


def make() -> LayerNormNoKeepdimMutant:
    """Factory for ``--impl mutant.layernorm-no-keepdim``."""
    return LayerNormNoKeepdimMutant()
