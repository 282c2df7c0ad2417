"""Example: audit your own attention function.

``my_attention`` stands for the function you want to audit. Like many real kernels it takes a
mask where True means "hidden" and returns only the output, not the weights. The adapter
declares exactly that, and the suite converts its canonical masks (True = may attend) for you;
weight-based checks report "not-applicable" instead of failing.

Run it:  python -m transformer_conformance run --profile quick \
             --impl transformer_conformance.examples.my_attention:make
"""

import math

import torch
from torch import Tensor

from transformer_conformance.adapter import Adapter, Capability, Conventions


def my_attention(q: Tensor, k: Tensor, v: Tensor, hide: Tensor | None = None, causal: bool = False) -> Tensor:
    """Your implementation: softmax(q k^T / sqrt(d)) v with a hide-mask (True = masked out).

    Claims: attention.formula, attention.fully-masked-row (rows with nothing visible give zeros).
    """
    scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.shape[-1])
    visible = torch.ones(scores.shape, dtype=torch.bool, device=q.device)
    if hide is not None:
        visible = visible & ~hide
    if causal:  # bottom-right aligned: query i sits at position num_k - num_q + i
        nq, nk = q.shape[-2], k.shape[-2]
        visible = visible & torch.ones(nq, nk, dtype=torch.bool, device=q.device).tril(nk - nq)
    scores = scores.masked_fill(~visible, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # all-hidden rows: 0, not NaN
    # Sum only visible values, so garbage (even NaN) in hidden padding rows cannot leak in.
    terms = weights.unsqueeze(-1) * v.float().unsqueeze(-3)
    out = torch.where(visible.unsqueeze(-1), terms, torch.zeros((), device=q.device)).sum(-2)
    return out.to(q.dtype)


class MyAttentionAdapter(Adapter):
    """Exposes ``my_attention`` as Capability.ATTENTION with its real conventions."""

    name = "my-attention"
    capabilities = frozenset({Capability.ATTENTION})
    conventions = Conventions(
        mask_polarity="true_masks",  # my_attention's mask hides where True
        causal_alignment="bottom-right",
        fully_masked_row="zero",
        returns_weights=False,  # only the output comes back
        dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16),
    )

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Call the function under audit; ``mask`` already arrives in its polarity."""
        return my_attention(q, k, v, hide=mask, causal=is_causal), None


def make() -> Adapter:
    """Factory named on the command line: ``--impl transformer_conformance.examples.my_attention:make``."""
    return MyAttentionAdapter()
