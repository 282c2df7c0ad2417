"""Planted bug: the normalisation statistics are taken over the batch axis (``dim=0``, BatchNorm
style) instead of the feature axis.

A single 1-d vector is normalised correctly; in a batch every sample's output depends on the
others, and a sample run alone (variance 0 over one sample) collapses to the bias.
Rejected by: layernorm.per-sample (check ``layernorm.per-sample``).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("layernorm.per-sample",)


class LayerNormBatchStatisticsMutant(ReferenceAdapter):
    """LayerNorm reducing over axis 0."""

    name = "mutant.layernorm-batch-statistics"
    capabilities = frozenset({Capability.LAYER_NORM})

    def build_layer_norm(
        self, d: int, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[[Tensor], Tensor]:
        """(x - mean_0) / sqrt(var_0 + eps) * weight + bias, statistics over ``dim=0`` (the bug)."""
        weight = torch.ones(d, device=device, dtype=dtype) if state is None else state["weight"]
        bias = torch.zeros(d, device=device, dtype=dtype) if state is None else state["bias"]
        eps = self.conventions.layer_norm_eps

        def run(x: Tensor) -> Tensor:
            work = x.double()
            mean = work.mean(dim=0, keepdim=True)
            var = work.var(dim=0, keepdim=True, unbiased=False)
            y = (work - mean) / torch.sqrt(var + eps)
            return (y * weight.double() + bias.double()).to(x.dtype)

        return run


def make() -> LayerNormBatchStatisticsMutant:
    """Factory for ``--impl mutant.layernorm-batch-statistics``."""
    return LayerNormBatchStatisticsMutant()
