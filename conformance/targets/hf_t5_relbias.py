"""T5's relative-position bias as an attention function: ``hf-t5-relbias`` and ``hf-t5-relbias-causal``.

What a user writes to run T5's attention on a fused kernel: the bias comes from Hugging Face
``transformers``' own ``T5Attention.compute_bias`` (T5's bucket function and its learned
``relative_attention_bias`` table; built offline from a tiny ``T5Config``, one module per head count,
seeded random table) and is passed with the mask as an additive float mask to
``F.scaled_dot_product_attention(..., scale=1.0)`` (T5 does not scale its scores). Queries of a chunk
sit at the end of their keys (``past_seen_tokens = nk - nq``), as in T5's decoder with a cache.

Declared: ``positions="relative"`` with T5's 32 buckets and max distance 128, ``attn_scale=1.0``,
bidirectional buckets (the encoder's, ``hf-t5-relbias``) or causal ones (the decoder's,
``hf-t5-relbias-causal``); the table through ``relative_bias_table``; boolean masks True = may attend;
``is_causal`` bottom-right; a fully masked row gives a zero output (the math backend's safe softmax of
an all ``-inf`` row); no weights returned.
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.targets.hf_gpt2 import BUILD_SEED, _transformers

#: T5's defaults (``T5Config``): buckets and the distance from which all share the last one.
BUCKETS, MAX_DISTANCE = 32, 128


class HFT5RelativeBiasAdapter(Adapter):
    """SDPA with the bias of ``transformers``' ``T5Attention.compute_bias``.

    Claims: relbias.buckets, relbias.distance-only, scoring.additive-bias.
    """

    capabilities = frozenset({Capability.ATTENTION})
    conventions = Conventions(
        mask_polarity="true_attends",
        causal_alignment="bottom-right",
        fully_masked_row="zero",
        returns_weights=False,
        nonfinite_pads="leak",
        dtypes=(torch.float32, torch.float64),
    )

    def __init__(self, *, decoder: bool) -> None:
        self.decoder = decoder
        self.name = "hf-t5-relbias-causal" if decoder else "hf-t5-relbias"
        self.architecture = Architecture(
            positions="relative",
            relative_buckets=BUCKETS,
            relative_max_distance=MAX_DISTANCE,
            relative_bidirectional=not decoder,
            attn_scale=1.0,
        )
        self._modules: dict[int, Any] = {}

    def module(self, num_heads: int) -> Any:
        """A ``T5Attention`` with a relative bias table for ``num_heads`` heads (built once, seeded)."""
        if num_heads not in self._modules:
            t5 = _transformers().models.t5.modeling_t5
            config = _transformers().T5Config(
                d_model=8 * num_heads,
                d_kv=8,
                num_heads=num_heads,
                relative_attention_num_buckets=BUCKETS,
                relative_attention_max_distance=MAX_DISTANCE,
                is_decoder=self.decoder,
                dropout_rate=0.0,
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(BUILD_SEED + num_heads)
                module = t5.T5Attention(config, has_relative_attention_bias=True, layer_idx=0)
            self._modules[num_heads] = module.double().eval()
        return self._modules[num_heads]

    def relative_bias_table(self, num_heads: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """T5's ``relative_attention_bias`` weight ``[buckets, num_heads]``."""
        weight: Tensor = self.module(num_heads).relative_attention_bias.weight.detach()
        return weight.to(device=device, dtype=dtype)

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """SDPA (scale 1) with ``compute_bias``, ``-inf`` where ``mask`` or the causal mask hides a key."""
        h, nq, nk = q.shape[1], q.shape[-2], k.shape[-2]
        module = self.module(h).to(q.device)
        with torch.no_grad():
            bias = module.compute_bias(nq, nk, device=q.device, past_seen_tokens=nk - nq).to(q.dtype)
        keep = mask
        if is_causal:
            rows = torch.arange(nk - nq, nk, device=q.device)[:, None]
            causal = torch.arange(nk, device=q.device)[None, :] <= rows
            keep = causal if keep is None else keep & causal
        if keep is not None:
            bias = bias.masked_fill(~keep, float("-inf"))
        with sdpa_kernel([SDPBackend.MATH]):
            out: Tensor = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        return out, None


def make() -> HFT5RelativeBiasAdapter:
    """Factory for ``hf-t5-relbias`` (the encoder's bidirectional buckets)."""
    return HFT5RelativeBiasAdapter(decoder=False)


def make_causal() -> HFT5RelativeBiasAdapter:
    """Factory for ``hf-t5-relbias-causal`` (the decoder's causal buckets)."""
    return HFT5RelativeBiasAdapter(decoder=True)
