"""Planted bug: the output comes back in the kernel's ``[b, num_q, h, d_v]`` layout (as flash-style
kernels return it) and the wrapper forgets to transpose it back to ``[b, h, num_q, d_v]``.

The values are right, only the axes are swapped; with ``h == num_q`` nothing even looks wrong.
Rejected by: attention.shapes (check ``attention.shapes``).
"""

from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.shapes",)


class AttentionHeadsLastMutant(ReferenceAdapter):
    """Reference attention whose output is returned as ``[b, num_q, h, d_v]``."""

    name = "mutant.attention-heads-last"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: the missing ``transpose(1, 2)``."""
        out, weights = super().attention(q, k, v, mask=mask, is_causal=is_causal)
        return out.transpose(1, 2), weights


def make() -> AttentionHeadsLastMutant:
    """Factory for ``--impl mutant.attention-heads-last``."""
    return AttentionHeadsLastMutant()
