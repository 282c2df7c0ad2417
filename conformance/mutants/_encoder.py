"""A correct encoder-only target (the reference ``VariantEncoder``) that the encoder mutants break.

``EncoderMutantBase`` serves ``Capability.ENCODER`` only; a subclass overrides ``model`` (how the
model is built) or ``run`` (how the handle calls it). (A private module: test_teeth.py audits only
the public mutant modules.)
"""

from typing import Any

import torch
from torch import Tensor, nn

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.variant_encdec import VariantEncoder
from transformer_conformance.targets.reference import ReferenceAdapter, _build


class MutantEncoderHandle:
    """``hidden(ids, pad_mask)`` that delegates to its adapter's ``run``."""

    def __init__(self, adapter: "EncoderMutantBase", model: nn.Module) -> None:
        self.adapter, self.model = adapter, model

    def hidden(self, ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """The hidden states as the mutant computes them."""
        return self.adapter.run(self.model, ids, pad_mask)


class EncoderMutantBase(ReferenceAdapter):
    """The reference encoder-only model; subclasses plant one bug."""

    capabilities = frozenset({Capability.ENCODER})

    def model(self, config: Any) -> nn.Module:
        """The model to build (default: the reference ``VariantEncoder``)."""
        return VariantEncoder(config)

    def run(self, model: nn.Module, ids: Tensor, pad_mask: Tensor | None) -> Tensor:
        """The handle's computation (default: the model on ids and mask)."""
        out: Tensor = model(ids, pad_mask)
        return out

    def build_encoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """``MutantEncoderHandle`` over ``self.model(config)``."""
        return MutantEncoderHandle(self, _build(lambda: self.model(config), state, device, dtype))
