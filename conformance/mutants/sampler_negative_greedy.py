"""Planted bug: the sampler treats any ``T <= 0`` as greedy instead of rejecting a negative temperature.

``if temperature <= 0: return argmax`` silently accepts T = -1 (a sign error upstream goes unnoticed);
NaN slips past the comparison as well and is only caught, if at all, deep inside the draw.
Rejected by: sampling.invalid-temperature (check ``sampler.invalid-temperature``).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.sampling import sampling_distribution
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("sampler.invalid-temperature",)


class SamplerNegativeGreedyMutant(ReferenceAdapter):
    """A sampler that maps every non-positive temperature to greedy decoding."""

    name = "mutant.sampler-negative-greedy"
    capabilities = frozenset({Capability.SAMPLER})

    def sample(self, logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
        """Argmax for T <= 0 (the bug: negative T accepted), else the reference draw."""
        if temperature <= 0:
            return logits.argmax(dim=-1)
        probs = sampling_distribution(logits.float(), temperature)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def make() -> SamplerNegativeGreedyMutant:
    """Factory for ``--impl mutant.sampler-negative-greedy``."""
    return SamplerNegativeGreedyMutant()
