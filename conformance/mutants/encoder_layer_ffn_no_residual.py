"""Planted bug: the FFN sublayer forgets its residual: ``norm_2(ffn(x))`` instead of ``norm_2(x + ffn(x))``.

The layer's output is then the normalised FFN update alone; the attention sublayer's result only
survives through the FFN.
Rejected by: residual.adds-update, residual.post-ln (check ``encoder_layer.residual-placement``).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.encoder import EncoderLayer
from transformer_conformance.reference.masks import key_padding_to_attention_mask
from transformer_conformance.reference.sublayer import residual_sublayer
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encoder_layer.residual-placement",)


class NoResidualFFNEncoderLayer(EncoderLayer):
    """Post-LN EncoderLayer whose FFN output replaces the stream instead of being added to it."""

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """Attention sublayer as the reference; FFN sublayer without ``x +`` (the bug)."""
        mask = None if pad_mask is None else key_padding_to_attention_mask(pad_mask)

        def attend(h: Tensor) -> Tensor:
            out: Tensor = self.self_attn(h, h, mask)[0]
            return out

        x = residual_sublayer(x, attend, self.norm_1, placement="post", dropout=self.dropout)
        out: Tensor = self.norm_2(self.dropout(self.ffn(x)))
        return out


class EncoderLayerFFNNoResidualMutant(ReferenceAdapter):
    """The reference encoder layer without the FFN residual."""

    name = "mutant.encoder-layer-ffn-no-residual"
    capabilities = frozenset({Capability.ENCODER_LAYER})

    def build_encoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """``NoResidualFFNEncoderLayer`` with the given weights."""
        module: Callable[..., Tensor] = _build(
            lambda: NoResidualFFNEncoderLayer(config), state, device, dtype
        )
        return module


def make() -> EncoderLayerFFNNoResidualMutant:
    """Factory for ``--impl mutant.encoder-layer-ffn-no-residual``."""
    return EncoderLayerFFNNoResidualMutant()
