"""Gemma 2's eager attention from ``transformers``, with logit soft-capping: ``hf-gemma2-attention``.

The attention function is ``transformers.models.gemma2.modeling_gemma2.eager_attention_forward``
itself (grouped K/V through its ``repeat_kv``, scores times ``query_pre_attn_scalar ** -0.5``, then
``softcap * tanh(s / softcap)``, the additive mask, a float32 softmax), called as ``Gemma2Attention``
calls it, with a tiny config's values: ``query_pre_attn_scalar = 16`` (scale 0.25, not 1/sqrt(d_k))
and ``attn_logit_softcapping = 50`` (Gemma 2's). Masks are passed as Hugging Face builds them: 0 where
a key may be attended, ``finfo(dtype).min`` where not.

Declared: ``num_kv_heads=2`` (contiguous groups), ``attn_scale=0.25``, ``attn_softcap=50``; boolean
masks True = may attend; ``is_causal`` bottom-right; a fully masked row gives uniform weights (every
score is ``finfo.min``); weights returned; ``attention_additive`` passes an additive mask straight to
the function; NaN pad contents leak (0 * NaN); float32 only (the softmax
is computed in float32 whatever the input dtype).
"""

from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.targets.hf_gpt2 import _transformers

#: The tiny config's ``query_pre_attn_scalar`` and ``attn_logit_softcapping``.
QUERY_PRE_ATTN_SCALAR, SOFTCAP = 16.0, 50.0


class HFGemma2AttentionAdapter(Adapter):
    """``eager_attention_forward`` of transformers' Gemma 2 as an attention function.

    Claims: scoring.softcap, scoring.scale-override, scoring.softcap-bounds-weights, gqa.repeat-equivalence.
    """

    name = "hf-gemma2-attention"
    capabilities = frozenset({Capability.ATTENTION})
    conventions = Conventions(
        mask_polarity="true_attends",
        causal_alignment="bottom-right",
        fully_masked_row="uniform",
        returns_weights=True,
        nonfinite_pads="leak",
        dtypes=(torch.float32,),
    )
    architecture = Architecture(num_kv_heads=2, attn_scale=QUERY_PRE_ATTN_SCALAR**-0.5, attn_softcap=SOFTCAP)

    def __init__(self) -> None:
        self._forward: Any = None

    def forward(self) -> Any:
        """``eager_attention_forward`` (imported once, offline)."""
        if self._forward is None:
            self._forward = _transformers().models.gemma2.modeling_gemma2.eager_attention_forward
        return self._forward

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Gemma 2's eager attention with the mask as Hugging Face builds it (0 / ``finfo.min``)."""
        nq, nk = q.shape[-2], k.shape[-2]
        keep = mask
        if is_causal:
            rows = torch.arange(nk - nq, nk, device=q.device)[:, None]
            causal = torch.arange(nk, device=q.device)[None, :] <= rows
            keep = causal if keep is None else keep & causal
        additive = None
        if keep is not None:
            zeros = torch.zeros(keep.shape, dtype=q.dtype, device=q.device)
            additive = zeros.masked_fill(~keep, torch.finfo(q.dtype).min)
        return self.attention_additive(q, k, v, bias=additive)

    def attention_additive(
        self, q: Tensor, k: Tensor, v: Tensor, *, bias: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """Gemma 2's eager attention with ``bias`` as its ``attention_mask`` (the function's own
        additive-mask entry point); output back to ``[b, h, nq, d_v]``."""
        module = SimpleNamespace(
            num_key_value_groups=q.shape[1] // k.shape[1], head_dim=q.shape[-1], training=False
        )
        out, weights = self.forward()(
            module, q, k, v, bias, dropout=0.0, scaling=QUERY_PRE_ATTN_SCALAR**-0.5, softcap=SOFTCAP
        )
        return out.transpose(1, 2), weights


def make() -> HFGemma2AttentionAdapter:
    """Factory for ``hf-gemma2-attention``."""
    return HFGemma2AttentionAdapter()
