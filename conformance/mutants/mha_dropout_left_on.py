"""Planted bug: attention dropout (p = 0.1) is called with ``training=True`` hard-coded, so it stays
on after ``eval()``.

Each call drops a different random tenth of the weights: repeated calls disagree.
Rejected by: determinism.eval (check ``mha.determinism``).
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.mutants.mha_nan_padding_matmul import reference_mha_with
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mha.determinism",)

#: Attention dropout probability.
P_DROP = 0.1


def dropout_kernel(q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None) -> tuple[Tensor, Tensor]:
    """The bug: ``F.dropout(weights, P_DROP, training=True)``."""
    _, weights = scaled_dot_product_attention(q, k, v, keep)
    dropped = F.dropout(weights, P_DROP, training=True)
    return dropped @ v, dropped


class MhaDropoutLeftOnMutant(ReferenceAdapter):
    """Reference MHA with attention dropout left on."""

    name = "mutant.mha-dropout-left-on"
    capabilities = frozenset({Capability.MHA})

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """Reference MHA with ``dropout_kernel``."""
        return reference_mha_with(dropout_kernel, d_model, num_heads, state, device, dtype)


def make() -> MhaDropoutLeftOnMutant:
    """Factory for ``--impl mutant.mha-dropout-left-on``."""
    return MhaDropoutLeftOnMutant()
