"""Planted bug: the layer returns the attention weights averaged over the heads, ``[b, num_q, num_k]``
(``nn.MultiheadAttention``'s default ``average_attn_weights=True``), while declaring that it returns
the per-head pattern ``[b, h, num_q, num_k]``.

The output is right.
Rejected by: mha.shape-preserving (check ``mha.shapes``).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mha.shapes",)


class MhaWeightsAveragedMutant(ReferenceAdapter):
    """Reference MHA returning head-averaged weights."""

    name = "mutant.mha-weights-averaged"
    capabilities = frozenset({Capability.MHA})

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """The reference layer, then the bug: ``weights.mean(dim=1)``."""
        layer = super().build_mha(d_model, num_heads, state, device, dtype)

        def run(
            x_q: Tensor, x_kv: Tensor, key_padding: Tensor | None = None, attn_mask: Tensor | None = None
        ) -> tuple[Tensor, Tensor | None]:
            out, weights = layer(x_q, x_kv, key_padding, attn_mask)
            return out, None if weights is None else weights.mean(dim=1)

        return run


def make() -> MhaWeightsAveragedMutant:
    """Factory for ``--impl mutant.mha-weights-averaged``."""
    return MhaWeightsAveragedMutant()
