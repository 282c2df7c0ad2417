"""RMSNorm: scale each position by the root mean square of its features; no mean, no bias.

``RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g`` over the last axis, where the gain is ``g = w`` (Llama,
T5, Mistral) or ``g = 1 + w`` (the offset form of Gemma, whose ``w`` starts at 0). Statistics run in
at least float32 and the result is cast back to the input dtype.
"""

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn

from transformer_conformance.reference.checking import checked, require, require_floating, require_same_device


@checked
def rms_norm(
    x: Float[Tensor, "*batch d"],
    weight: Float[Tensor, " d"] | None = None,
    eps: float = 1e-6,
    *,
    offset: bool = False,
) -> Float[Tensor, "*batch d"]:
    """``x / sqrt(mean(x^2) + eps) * (weight or 1 + weight)`` over the last axis.

    Claims: rmsnorm.formula, rmsnorm.scale-invariant.
    """
    require_floating("x", x)
    require(math.isfinite(eps) and eps >= 0.0, "eps", "a finite number >= 0", eps)
    require_same_device(x=x, weight=weight)
    work = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    y = work / torch.sqrt((work * work).mean(dim=-1, keepdim=True) + eps)
    if weight is not None:
        gain = weight.to(work.dtype)
        y = y * (1.0 + gain if offset else gain)
    return y.to(x.dtype)


class RMSNorm(nn.Module):
    """RMSNorm with a learned gain ``weight`` (1 at init, or 0 at init in the ``offset`` form).

    Claims: rmsnorm.formula, rmsnorm.scale-invariant.
    """

    def __init__(self, d: int, eps: float = 1e-6, *, offset: bool = False) -> None:
        super().__init__()
        require(d > 0, "d", "a positive integer", d)
        self.d = d
        self.eps = eps
        self.offset = offset
        self.weight = nn.Parameter(torch.zeros(d) if offset else torch.ones(d))

    @checked
    def forward(self, x: Float[Tensor, "*batch {self.d}"]) -> Float[Tensor, "*batch {self.d}"]:
        """Normalise every position on its own. Claims: rmsnorm.formula."""
        return rms_norm(x, self.weight, self.eps, offset=self.offset)
