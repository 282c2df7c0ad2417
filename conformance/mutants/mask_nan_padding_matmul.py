"""Planted bug: the weighted sum is a plain ``weights @ v``. Masked weights are exactly 0, but
0 * NaN = NaN, so a NaN in a padded value row (e.g. a NaN pad embedding) poisons every output.

Huge finite pad contents (0 * 1e10 = 0) pass; only NaN/Inf contents expose it.
Rejected by: mask.padding.invariance (check ``mask.padding.nan-contents``).
"""

from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mask.padding.nan-contents",)


class MaskNanPaddingMatmulMutant(ReferenceAdapter):
    """Reference weights, values summed with a plain matmul."""

    name = "mutant.mask-nan-padding-matmul"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``weights @ v`` over every value row, hidden ones included."""
        _, weights = super().attention(q, k, v, mask=mask, is_causal=is_causal)
        assert weights is not None
        return weights @ v, weights


def make() -> MaskNanPaddingMatmulMutant:
    """Factory for ``--impl mutant.mask-nan-padding-matmul``."""
    return MaskNanPaddingMatmulMutant()
