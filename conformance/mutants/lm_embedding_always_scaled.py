"""Planted bug: the token embedding is always multiplied by ``sqrt(d_model)``.

The paper scales the embedding; this implementation hard-codes that scaling and ignores the config's
``scale_embedding = False``, so with the canonical weights every logit is off. Self-consistent, so no
metamorphic property sees it. Rejected by: embedding.plus-positional / output.projection
(check ``lm.reference``).
"""

import math
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import DecoderOnlyLM, positions
from transformer_conformance.targets.reference import LMHandle, ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.reference",)


class AlwaysScaledLM(DecoderOnlyLM):
    """DecoderOnlyLM that scales its embedding whatever the config says (the bug)."""

    def embed_ids(self, ids: Tensor, offset: int = 0) -> Tensor:
        """sqrt(d_model) * embedding + positions ``offset..offset+l-1``."""
        x: Tensor = self.embed.weight[ids] * math.sqrt(self.config.d_model)
        x = x + positions(self.config, self.pos_embed, ids.shape[1], offset, x)
        dropped: Tensor = self.dropout(x)
        return dropped


class LMEmbeddingAlwaysScaledMutant(ReferenceAdapter):
    """The reference LM with a hard-coded embedding scale."""

    name = "mutant.lm-embedding-always-scaled"
    capabilities = frozenset({Capability.DECODER_LM})

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """LMHandle over ``AlwaysScaledLM``."""
        return LMHandle(_build(lambda: AlwaysScaledLM(config), state, device, dtype))


def make() -> LMEmbeddingAlwaysScaledMutant:
    """Factory for ``--impl mutant.lm-embedding-always-scaled``."""
    return LMEmbeddingAlwaysScaledMutant()
