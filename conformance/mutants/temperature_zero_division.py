"""Planted bug: temperature 0 is divided by like any other temperature.

``softmax(logits / T)`` at ``T = 0`` gives infinities and NaN probabilities; the draw then crashes
(or returns garbage) instead of the greedy argmax. Negative and NaN temperatures are still rejected,
so this is the only bug. Rejected by: sampling.invalid-temperature (check ``sampler.temperature-zero``).
"""

import math

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("sampler.temperature-zero",)


class TemperatureZeroDivisionMutant(ReferenceAdapter):
    """A sampler without the T = 0 special case."""

    name = "mutant.temperature-zero-division"
    capabilities = frozenset({Capability.SAMPLER})

    def sample(self, logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
        """Draw from softmax(logits / T), dividing even when T = 0 (the bug)."""
        if math.isnan(temperature) or temperature < 0:
            raise ValueError(f"argument 'temperature': expected a number >= 0, got {temperature}")
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def make() -> TemperatureZeroDivisionMutant:
    """Factory for ``--impl mutant.temperature-zero-division``."""
    return TemperatureZeroDivisionMutant()
