"""Planted bug: the embedding dropout is ``F.dropout(x, p)``, whose ``training`` defaults to True.

``model.eval()`` switches off ``nn.Dropout`` modules but not a functional call that never reads
``self.training``: with a config dropout of 0.1 two decodes of the same input differ.
Rejected by: determinism.eval (check ``encdec.determinism``).
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import EncoderDecoder, positions
from transformer_conformance.targets.reference import ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("encdec.determinism",)


class FunctionalDropout(EncoderDecoder):
    """EncoderDecoder whose input dropout ignores eval mode (the bug)."""

    def embed_source(self, src: Tensor) -> Tensor:
        """Source embedding + positions, then ``F.dropout`` (always on)."""
        x: Tensor = self.src_embed(src)
        x = x + positions(self.config, self.src_pos_embed, src.shape[1], 0, x)
        return F.dropout(x, self.config.dropout)

    def embed_target(self, tgt: Tensor, offset: int = 0) -> Tensor:
        """Target embedding + positions, then ``F.dropout`` (always on)."""
        x: Tensor = self.tgt_embed(tgt)
        x = x + positions(self.config, self.tgt_pos_embed, tgt.shape[1], offset, x)
        return F.dropout(x, self.config.dropout)


class EncdecFunctionalDropoutMutant(ReferenceAdapter):
    """The reference encoder-decoder with functional dropout left on in eval mode."""

    name = "mutant.encdec-functional-dropout"
    capabilities = frozenset({Capability.ENCODER_DECODER})

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """``FunctionalDropout``."""
        return _build(lambda: FunctionalDropout(config), state, device, dtype)


def make() -> EncdecFunctionalDropoutMutant:
    """Factory for ``--impl mutant.encdec-functional-dropout``."""
    return EncdecFunctionalDropoutMutant()
