"""Planted bug: the LM ignores the pad mask it is given and infers padding from ``ids == pad_id``.

Correct as long as every pad position holds ``pad_id``; when the ids under the padding are anything
else (a tokenizer that pads with EOS, a buffer never cleared) those positions become visible keys.
Rejected by: mask.padding.invariance / mask.padding.pad-value-arbitrary (check ``lm.padding-invariance``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import DecoderOnlyLM
from transformer_conformance.targets.reference import LMHandle, ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.padding-invariance", "lm.cache-with-padding")


class PadFromIdsHandle(LMHandle):
    """LMHandle that rebuilds the pad mask from the ids (the bug)."""

    def logits(self, ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """Logits with padding taken to be exactly the positions holding ``pad_id``."""
        if pad_mask is not None:
            pad_mask = ids != self.model.config.pad_id
        return super().logits(ids, pad_mask)


class LMPadFromIdsMutant(ReferenceAdapter):
    """The reference LM with padding inferred from the token ids."""

    name = "mutant.lm-pad-from-ids"
    capabilities = frozenset({Capability.DECODER_LM})

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """PadFromIdsHandle over the reference LM."""
        return PadFromIdsHandle(_build(lambda: DecoderOnlyLM(config), state, device, dtype))


def make() -> LMPadFromIdsMutant:
    """Factory for ``--impl mutant.lm-pad-from-ids``."""
    return LMPadFromIdsMutant()
