"""Planted bug: a blockwise (flash-style) kernel walks the keys in blocks of 16 and returns the
probabilities of the last block only, ``[b, h, num_q, 16]``, instead of the whole ``[num_q, num_k]``
pattern. The output is right.

Short sequences (one block) look perfect; the pattern stops growing as L * L beyond 16 keys.
Rejected by: attention.pattern-quadratic (check ``attention.weights.shape``).
"""

from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

#: Keys per block of the kernel.
BLOCK = 16

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.weights.shape",)


class AttentionWeightsLastBlockMutant(ReferenceAdapter):
    """Reference attention returning only the last key block of the weights."""

    name = "mutant.attention-weights-last-block"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``weights[..., -BLOCK:]`` once there is more than one block."""
        out, weights = super().attention(q, k, v, mask=mask, is_causal=is_causal)
        if weights is not None and k.shape[-2] > BLOCK:
            weights = weights[..., -BLOCK:]
        return out, weights


def make() -> AttentionWeightsLastBlockMutant:
    """Factory for ``--impl mutant.attention-weights-last-block``."""
    return AttentionWeightsLastBlockMutant()
