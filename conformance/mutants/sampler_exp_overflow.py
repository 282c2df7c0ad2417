"""Planted bug: the sampler's softmax is ``exp(x) / exp(x).sum()`` without subtracting the max.

Fine for moderate temperatures; at a small T the scaled logits exceed ~88 and ``exp`` overflows in
float32 to inf, the probabilities become NaN and the draw fails instead of returning the argmax.
Rejected by: sampling.temperature-limits (check ``sampler.temperature-limits``).
"""

import math

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("sampler.temperature-limits",)


class SamplerExpOverflowMutant(ReferenceAdapter):
    """A sampler with a naive (unshifted) softmax."""

    name = "mutant.sampler-exp-overflow"
    capabilities = frozenset({Capability.SAMPLER})

    def sample(self, logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
        """Argmax at T = 0, else a draw from exp(logits / T) normalised without the max shift (the bug)."""
        if math.isnan(temperature) or temperature < 0:
            raise ValueError(f"argument 'temperature': expected a number >= 0, got {temperature}")
        if temperature == 0:
            return logits.argmax(dim=-1)
        weights = torch.exp(logits.float() / temperature)
        probs = weights / weights.sum(dim=-1, keepdim=True)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def make() -> SamplerExpOverflowMutant:
    """Factory for ``--impl mutant.sampler-exp-overflow``."""
    return SamplerExpOverflowMutant()
