"""Planted bug: the sampler draws from ``softmax(logits * T)`` instead of ``softmax(logits / T)``.

Right at T = 1, so a quick test at the default temperature passes; every other temperature works
backwards (low T flattens, high T sharpens).
Rejected by: sampling.temperature-frequencies (check ``sampler.frequencies``), sampling.temperature-limits
(check ``sampler.temperature-limits``).
"""

import math

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("sampler.frequencies", "sampler.temperature-limits")


class SamplerTemperatureMultipliedMutant(ReferenceAdapter):
    """A sampler that multiplies the logits by the temperature."""

    name = "mutant.sampler-temperature-multiplied"
    capabilities = frozenset({Capability.SAMPLER})

    def sample(self, logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
        """Argmax at T = 0, else a draw from softmax(logits * T) (the bug)."""
        if math.isnan(temperature) or temperature < 0:
            raise ValueError(f"argument 'temperature': expected a number >= 0, got {temperature}")
        if temperature == 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.float() * temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def make() -> SamplerTemperatureMultipliedMutant:
    """Factory for ``--impl mutant.sampler-temperature-multiplied``."""
    return SamplerTemperatureMultipliedMutant()
