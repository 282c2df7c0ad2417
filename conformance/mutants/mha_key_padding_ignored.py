"""Planted bug: the layer accepts ``key_padding`` but never passes it on to the attention call, so
queries attend to padded memory positions.

Unpadded batches are exact; any padding content leaks into the outputs.
Rejected by: mask.padding.invariance (check ``mha.padding-invariance``).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mha.padding-invariance",)


class MhaKeyPaddingIgnoredMutant(ReferenceAdapter):
    """Reference MHA that drops ``key_padding``."""

    name = "mutant.mha-key-padding-ignored"
    capabilities = frozenset({Capability.MHA})

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """The reference layer, called without ``key_padding`` (the bug)."""
        layer = super().build_mha(d_model, num_heads, state, device, dtype)

        def run(
            x_q: Tensor, x_kv: Tensor, key_padding: Tensor | None = None, attn_mask: Tensor | None = None
        ) -> tuple[Tensor, Tensor | None]:
            return layer(x_q, x_kv, None, attn_mask)

        return run


def make() -> MhaKeyPaddingIgnoredMutant:
    """Factory for ``--impl mutant.mha-key-padding-ignored``."""
    return MhaKeyPaddingIgnoredMutant()
