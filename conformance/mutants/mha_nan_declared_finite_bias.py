"""Planted bug: the layer was ported from code that masks with an additive -1e4 bias (``(1 - mask) *
-10000``) but keeps the declaration ``fully_masked_row = "nan"`` of the torch layer it replaces. A
sample whose keys are all padding gets finite (softmax of the raw scores) outputs, not NaN.

Rejected by: attention.weights.rows-sum-to-one (check ``mha.fully-masked-row.declared``).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability, Conventions
from transformer_conformance.mutants.mha_nan_padding_matmul import reference_mha_with
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.targets.reference import ReferenceAdapter

# The checks that must fail on this mutant (tests/conformance/test_teeth.py).
REJECTED_BY = ("mha.fully-masked-row.declared",)

#: The finite bias added at masked positions.
BIAS = -1e4


def finite_bias_kernel(q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None) -> tuple[Tensor, Tensor]:
    """The bug: ``scores + where(keep, 0, -1e4)``."""
    bias = None
    if keep is not None:
        zero = torch.zeros((), dtype=q.dtype, device=q.device)
        bias = torch.where(keep, zero, torch.full((), BIAS, dtype=q.dtype, device=q.device))
    out, weights = scaled_dot_product_attention(q, k, v, bias)
    return out, weights


class MhaNanDeclaredFiniteBiasMutant(ReferenceAdapter):
    """Reference MHA with additive -1e4 masking, declared 'nan'."""

    name = "mutant.mha-nan-declared-finite-bias"
    capabilities = frozenset({Capability.MHA})
    conventions = Conventions(
        fully_masked_row="nan",
        dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16),
    )

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """Reference MHA with ``finite_bias_kernel``."""
        return reference_mha_with(finite_bias_kernel, d_model, num_heads, state, device, dtype)


def make() -> MhaNanDeclaredFiniteBiasMutant:
    """Factory for ``--impl mutant.mha-nan-declared-finite-bias``."""
    return MhaNanDeclaredFiniteBiasMutant()
