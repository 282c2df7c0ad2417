"""Planted bug: the model is left in training mode, so dropout stays on at inference.

The handle forgets ``model.eval()``: with a config dropout of 0.1 two calls on the same input give
different logits. Rejected by: determinism.eval (check ``lm.determinism``).
"""

from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.reference.model import DecoderOnlyLM
from transformer_conformance.targets.reference import LMHandle, ReferenceAdapter, _build

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("lm.determinism",)


class DropoutInEvalMutant(ReferenceAdapter):
    """The reference LM served in train mode."""

    name = "mutant.dropout-in-eval"
    capabilities = frozenset({Capability.DECODER_LM})

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """LMHandle over a reference LM switched back to train mode (the bug)."""
        return LMHandle(_build(lambda: DecoderOnlyLM(config), state, device, dtype).train())


def make() -> DropoutInEvalMutant:
    """Factory for ``--impl mutant.dropout-in-eval``."""
    return DropoutInEvalMutant()
