"""ALiBi attention on torch SDPA with an additive float mask: ``torch-sdpa-alibi``.

What a user writes for a BLOOM/MPT-style model: the slopes of the ALiBi paper's ``get_slopes`` (written
out here, not taken from the reference), the bias in BLOOM's form ``slope_h * j`` (key position only:
it differs from ``-slope_h * (i - j)`` by a constant per query row, which the softmax ignores), masked
keys set to ``-inf`` in the same float mask, ``F.scaled_dot_product_attention(q, k, v, attn_mask=bias)``
on the math backend.

Declared (measured with torch 2.13 on the CPU): ``positions="alibi"`` for the attention; boolean masks
True = may attend; ``is_causal=True`` builds a bottom-right causal mask (query i of nq over nk keys at
position nk - nq + i); a fully masked row gives a zero output (the math backend's safe softmax of an
all ``-inf`` row); no weights returned.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.reference.architecture import Architecture


def get_slopes(n: int) -> list[float]:
    """The ALiBi paper's slopes (``attention_with_linear_biases``, ofirpress/attention_with_linear_biases)."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + get_slopes(2 * closest)[0::2][: n - closest]


class TorchSDPAAlibiAdapter(Adapter):
    """SDPA with an additive ALiBi bias (BLOOM's key-position form).

    Claims: alibi.slopes, alibi.distance-only.
    """

    name = "torch-sdpa-alibi"
    capabilities = frozenset({Capability.ATTENTION})
    conventions = Conventions(
        mask_polarity="true_attends",
        causal_alignment="bottom-right",
        fully_masked_row="zero",
        returns_weights=False,
        nonfinite_pads="leak",
        dtypes=(torch.float32, torch.float64),
    )
    architecture = Architecture(positions="alibi")

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """SDPA with ``slope_h * j`` added to every score and ``-inf`` where ``mask`` (or the causal mask)
        hides a key; no weights."""
        h, nq, nk = q.shape[1], q.shape[-2], k.shape[-2]
        slopes = torch.tensor(get_slopes(h), dtype=q.dtype, device=q.device)
        bias = slopes[:, None, None] * torch.arange(nk, dtype=q.dtype, device=q.device)[None, None, :]
        bias = bias.expand(h, nq, nk)
        keep = mask
        if is_causal:
            rows = torch.arange(nk - nq, nk, device=q.device)[:, None]
            causal = torch.arange(nk, device=q.device)[None, :] <= rows
            keep = causal if keep is None else keep & causal
        if keep is not None:
            bias = bias.masked_fill(~keep, float("-inf"))
        if bias.dim() == 3:
            bias = bias[None]
        if k.shape[1] != h:  # grouped K/V
            k = k.repeat_interleave(h // k.shape[1], dim=1)
            v = v.repeat_interleave(h // v.shape[1], dim=1)
        with sdpa_kernel([SDPBackend.MATH]):
            out: Tensor = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return out, None


def make() -> TorchSDPAAlibiAdapter:
    """Factory for ``torch-sdpa-alibi``."""
    return TorchSDPAAlibiAdapter()
