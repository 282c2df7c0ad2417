"""Layer normalisation written out, and batch normalisation (train mode) for contrast.

LayerNorm takes its statistics over the last axis of one position of one sample; BatchNorm takes
them across the batch (and the sequence), so a sample's output depends on the other samples.
Both use the biased variance (divide by the count) with ``eps`` inside the square root.
Half-precision inputs are normalised in float32 and cast back.
"""

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn

from transformer_conformance.reference.checking import (
    checked,
    require,
    require_floating,
    require_same_device,
    require_same_dtype,
)


def _require_eps(eps: float) -> None:
    require(math.isfinite(eps) and eps >= 0.0, "eps", "a finite number >= 0", eps)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@checked
def layer_norm(
    x: Float[Tensor, "*batch d"],
    weight: Float[Tensor, " d"] | None = None,
    bias: Float[Tensor, " d"] | None = None,
    eps: float | int = 1e-5,
) -> Float[Tensor, "*batch d"]:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last axis, biased variance.

    Claims: layernorm.formula, layernorm.zero-mean-unit-var, layernorm.per-sample, layernorm.position-wise.
    """
    require_floating("x", x)
    _require_eps(float(eps))
    require_same_device(x=x, weight=weight, bias=bias)
    require_same_dtype(x=x, weight=weight, bias=bias)
    work = x.to(_work_dtype(x.dtype))
    mean = work.mean(dim=-1, keepdim=True)
    centered = work - mean
    var = (centered * centered).mean(dim=-1, keepdim=True)  # biased: divide by d, not d - 1
    y = centered / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight.to(work.dtype)
    if bias is not None:
        y = y + bias.to(work.dtype)
    return y.to(x.dtype)


class LayerNorm(nn.Module):
    """Learned-affine LayerNorm over the last axis (params ``weight`` = 1, ``bias`` = 0 at init).

    Matches ``torch.nn.functional.layer_norm(x, (d,), weight, bias, eps)``.

    Claims: layernorm.formula, layernorm.zero-mean-unit-var, layernorm.per-sample, layernorm.position-wise.
    """

    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        require(d > 0, "d", "a positive integer", d)
        _require_eps(float(eps))
        self.d = d
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))

    @checked
    def forward(self, x: Float[Tensor, "*batch {self.d}"]) -> Float[Tensor, "*batch {self.d}"]:
        """Normalise every position of every sample on its own.

        Claims: layernorm.formula, layernorm.per-sample, layernorm.position-wise.
        """
        require_floating("x", x)
        require_same_device(x=x, weight=self.weight)
        weight = self.weight.to(x.dtype) if x.dtype != self.weight.dtype else self.weight
        bias = self.bias.to(x.dtype) if x.dtype != self.bias.dtype else self.bias
        return layer_norm(x, weight, bias, self.eps)


@checked
def batch_norm_train(
    x: Float[Tensor, "batch length d"], eps: float | int = 1e-5
) -> Float[Tensor, "batch length d"]:
    """BatchNorm in training mode (no affine): per feature, statistics over batch and length together.

    The contrast to LayerNorm: changing one sample changes the others' outputs.

    Claims: batchnorm.cross-sample.
    """
    require_floating("x", x)
    _require_eps(float(eps))
    work = x.to(_work_dtype(x.dtype))
    mean = work.mean(dim=(0, 1), keepdim=True)
    centered = work - mean
    var = (centered * centered).mean(dim=(0, 1), keepdim=True)
    return (centered / torch.sqrt(var + eps)).to(x.dtype)
