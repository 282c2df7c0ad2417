"""Planted bug: the relative-position bias multiplies the scores (``s * exp(B)``) instead of being added
to them, so its effect depends on the inputs: with zero scores it vanishes, with large ones it is huge.

Rejected by: scoring.additive-bias (checks ``attention.relbias.additive``,
``attention.relbias.differential``).
"""

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants._variants import DeclaredVariantAdapter
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.grouped import repeat_kv, window_keep

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("attention.relbias.additive", "attention.relbias.differential")


class AttentionRelbiasScalesScoresMutant(DeclaredVariantAdapter):
    """Declares an additive T5 relative bias, scales the scores by exp(bias)."""

    name = "mutant.attention-relbias-scales-scores"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(positions="relative", relative_buckets=8, relative_max_distance=16)
    }

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        arch = self.attention_arch()
        nq, nk, h = q.shape[-2], k.shape[-2], q.shape[1]
        keep = mask
        if is_causal:
            qpos, kpos = torch.arange(nk - nq, nk, device=q.device), torch.arange(nk, device=q.device)
            causal = window_keep(qpos, kpos)
            keep = causal if keep is None else keep & causal
        bias = self.position_bias(nq, nk, h, q.device)
        assert bias is not None
        k, v = repeat_kv(k, h, arch.kv_mapping), repeat_kv(v, h, arch.kv_mapping)
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5 * bias.to(q.dtype).exp()
        if keep is not None:
            scores = scores.masked_fill(~keep, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        return weights @ v, weights


def make() -> AttentionRelbiasScalesScoresMutant:
    """Factory for ``--impl mutant.attention-relbias-scales-scores``."""
    return AttentionRelbiasScalesScoresMutant()
