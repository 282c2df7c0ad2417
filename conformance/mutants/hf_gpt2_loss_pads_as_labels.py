"""Planted bug: hf-gpt2's loss passes ``labels=input_ids`` without replacing pads by -100.

The usual slip with ``GPT2LMHeadModel(input_ids, labels=input_ids)`` on a padded batch: transformers'
``ForCausalLMLoss`` only ignores ``-100``, so every pad target is scored and counted in the mean.
Unpadded batches are unaffected. Rejected by: loss.ignores-padding (check ``loss.ignores-padding``).
"""

from torch import Tensor

from transformer_conformance.targets import hf_gpt2
from transformer_conformance.targets.hf_gpt2 import HFGPT2Adapter, causal_lm_loss

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("loss.ignores-padding",)


class LossPadsAsLabelsMutant(HFGPT2Adapter):
    """transformers' causal-LM loss with the pad ids left in the labels."""

    name = "mutant.hf-gpt2-loss-pads-as-labels"

    def next_token_loss(self, logits: Tensor, ids: Tensor, pad_id: int | None) -> Tensor:
        """``ForCausalLMLoss(logits, labels=ids)``: pads are ordinary targets (the bug)."""
        return causal_lm_loss(logits, ids)


def make() -> LossPadsAsLabelsMutant:
    """Factory for ``--impl mutant.hf-gpt2-loss-pads-as-labels`` (needs ``transformers``)."""
    hf_gpt2.make()
    return LossPadsAsLabelsMutant()
