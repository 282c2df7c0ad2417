"""Planted bug: a 2-D mask is taken for a key padding mask ``[b, num_k]`` (the Hugging Face
``attention_mask`` convention) and reshaped to ``[b, 1, 1, num_k]``, so an explicit ``[num_q, num_k]``
causal mask is read as one padding row per sample.

4-D masks and ``is_causal`` are right. With ``num_q == b`` the causal mask silently becomes a
per-sample padding mask; otherwise the broadcast fails.
Rejected by: mask.causal.future-blind (check ``mask.causal.explicit``),
mask.causal.alignment (check ``mask.causal.differential``).
"""

from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mask.causal.explicit", "mask.causal.differential")


class Mask2dReadAsKeyPaddingMutant(ReferenceAdapter):
    """Reference attention that reshapes any 2-D mask to ``[rows, 1, 1, num_k]``."""

    name = "mutant.mask-2d-read-as-key-padding"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The bug: ``mask[:, None, None, :]`` for a 2-D mask."""
        if mask is not None and mask.dim() == 2:
            mask = mask[:, None, None, :]
        return super().attention(q, k, v, mask=mask, is_causal=is_causal)


def make() -> Mask2dReadAsKeyPaddingMutant:
    """Factory for ``--impl mutant.mask-2d-read-as-key-padding``."""
    return Mask2dReadAsKeyPaddingMutant()
