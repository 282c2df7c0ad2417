"""Planted bug: the layer accepts ``attn_mask`` but only forwards ``key_padding`` to the attention
call, so a causal ``attn_mask`` is silently dropped and every position sees the future.

Rejected by: mask.causal.future-blind (check ``mha.causal``).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mha.causal",)


class MhaAttnMaskIgnoredMutant(ReferenceAdapter):
    """Reference MHA that drops ``attn_mask``."""

    name = "mutant.mha-attn-mask-ignored"
    capabilities = frozenset({Capability.MHA})

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """The reference layer, called without ``attn_mask`` (the bug)."""
        layer = super().build_mha(d_model, num_heads, state, device, dtype)

        def run(
            x_q: Tensor, x_kv: Tensor, key_padding: Tensor | None = None, attn_mask: Tensor | None = None
        ) -> tuple[Tensor, Tensor | None]:
            return layer(x_q, x_kv, key_padding, None)

        return run


def make() -> MhaAttnMaskIgnoredMutant:
    """Factory for ``--impl mutant.mha-attn-mask-ignored``."""
    return MhaAttnMaskIgnoredMutant()
