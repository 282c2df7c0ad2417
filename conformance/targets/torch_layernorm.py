"""``torch.nn.functional.layer_norm`` as target ``torch-layernorm`` (biased variance, eps 1e-5 inside
the square root, learned ``weight``/``bias`` as in ``reference.layernorm.LayerNorm``)."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer_conformance.adapter import Adapter, Capability, Conventions


class TorchLayerNormAdapter(Adapter):
    """``F.layer_norm(x, (d,), weight, bias, eps=1e-5)``.

    Claims: layernorm.formula.
    """

    name = "torch-layernorm"
    capabilities = frozenset({Capability.LAYER_NORM})
    conventions = Conventions(
        layer_norm_eps=1e-5, dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16)
    )

    def build_layer_norm(
        self, d: int, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[[Tensor], Tensor]:
        """A closure over canonical ``weight``/``bias`` (ones/zeros when ``state`` is None)."""
        if state is None:
            weight = torch.ones(d, device=device, dtype=dtype)
            bias = torch.zeros(d, device=device, dtype=dtype)
        else:
            weight = state["weight"].to(device=device, dtype=dtype)
            bias = state["bias"].to(device=device, dtype=dtype)
        eps = self.conventions.layer_norm_eps

        def run(x: Tensor) -> Tensor:
            return F.layer_norm(x, (d,), weight, bias, eps)

        return run


def make() -> TorchLayerNormAdapter:
    """Factory for ``torch-layernorm``."""
    return TorchLayerNormAdapter()
