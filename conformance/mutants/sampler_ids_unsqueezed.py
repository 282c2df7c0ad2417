"""Planted bug: the sampler returns ``torch.multinomial(probs, 1)`` without ``.squeeze(-1)``.

The ids come back as ``[batch, 1]`` instead of ``[batch]``; appending them to a ``[batch, t]`` sequence
then broadcasts or fails far from the cause. Rejected by: sampling.temperature-limits
(check ``sampler.shape``).
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.sampling import sampling_distribution
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("sampler.shape",)


class SamplerIdsUnsqueezedMutant(ReferenceAdapter):
    """A correct draw returned with a trailing axis of 1."""

    name = "mutant.sampler-ids-unsqueezed"
    capabilities = frozenset({Capability.SAMPLER})

    def sample(self, logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
        """ids [b, 1] (the bug: no squeeze)."""
        if temperature == 0:
            return logits.argmax(dim=-1, keepdim=True)
        probs = sampling_distribution(logits.float(), temperature)
        return torch.multinomial(probs, 1, generator=generator)


def make() -> SamplerIdsUnsqueezedMutant:
    """Factory for ``--impl mutant.sampler-ids-unsqueezed``."""
    return SamplerIdsUnsqueezedMutant()
