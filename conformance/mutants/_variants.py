"""A correct target for the declared-architecture checks, which the variant mutants break one way each.

``DeclaredVariantAdapter`` serves attention with ``reference.grouped.grouped_attention`` under the
architecture it declares for ``Capability.ATTENTION`` (grouped KV heads, mapping, scale, soft-cap, a
sliding window on ``is_causal``, an ALiBi or T5 relative-position bias with its own seeded table, read
through ``relative_bias_table``) and its LM with ``reference.variant_lm.VariantLM`` of the config the
checks pass (built from its declared ``architecture``). Subclasses change the declaration or the
computation. (A private module: test_teeth.py audits only the public mutant modules.)
"""

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.reference.alibi import alibi_bias, alibi_slopes
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.grouped import grouped_attention, repeat_kv, window_keep
from transformer_conformance.reference.relative_bias import relative_bucket
from transformer_conformance.reference.variant_lm import VariantLM
from transformer_conformance.targets.reference import LMHandle, _build

#: A Llama-shaped architecture (rotary, RMSNorm, SwiGLU, two KV heads, no biases).
LLAMA_LIKE = Architecture(
    positions="rotary",
    norm="rmsnorm",
    activation="silu",
    gated=True,
    ffn_bias=False,
    num_kv_heads=2,
    qkv_bias=False,
    out_bias=False,
)


class DeclaredVariantAdapter(Adapter):
    """Attention and a decoder-only LM that do what ``architecture_for`` declares."""

    name = "declared-variant"
    capabilities = frozenset({Capability.ATTENTION, Capability.DECODER_LM})
    conventions = Conventions(norm_placement="pre", layer_norm_eps=1e-6)
    architecture = LLAMA_LIKE
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(num_kv_heads=2)
    }
    #: The window the attention really applies (None: the declared one).
    applied_window: int | None = None
    #: Soft-cap the biased scores, cap(s + B), instead of cap(s) + B.
    softcap_after_bias: bool = False

    def attention_arch(self) -> Architecture:
        """The architecture the attention computes (the declared one unless a subclass lies)."""
        return self.architecture_for(Capability.ATTENTION)

    def slopes(self, num_heads: int) -> Tensor:
        """The ALiBi slopes the attention applies (the standard ones unless a subclass lies)."""
        return alibi_slopes(num_heads)

    def relative_positions(self, query_positions: Tensor, key_positions: Tensor) -> Tensor:
        """``j - i`` for every query and key position: what the relative buckets are taken of."""
        return key_positions[None, :] - query_positions[:, None]

    def relative_bias_table(self, num_heads: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The attention's own T5 bias table ``[relative_buckets, num_heads]`` (seeded by the head count)."""
        arch = self.architecture_for(Capability.ATTENTION)
        generator = torch.Generator().manual_seed(1000 + num_heads)
        table = torch.randn(arch.relative_buckets, num_heads, generator=generator, dtype=torch.float64)
        return table.to(device=device, dtype=dtype)

    def position_bias(self, nq: int, nk: int, h: int, device: torch.device) -> Tensor | None:
        """The bias ``[h, nq, nk]`` (float64) of the declared positions (queries bottom-right), or None."""
        arch = self.attention_arch()
        qpos, kpos = torch.arange(nk - nq, nk, device=device), torch.arange(nk, device=device)
        if arch.positions == "alibi":
            return alibi_bias(self.slopes(h).to(device), qpos, kpos)
        if arch.positions == "relative":
            buckets = relative_bucket(
                self.relative_positions(qpos, kpos),
                bidirectional=arch.relative_bidirectional,
                num_buckets=arch.relative_buckets,
                max_distance=arch.relative_max_distance,
            )
            table = self.relative_bias_table(h, device, torch.float64)
            return table[buckets].permute(2, 0, 1)
        return None

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Grouped attention of the declared architecture; ``is_causal``: bottom-right, windowed."""
        arch = self.attention_arch()
        keep = mask
        nq, nk = q.shape[-2], k.shape[-2]
        if is_causal:
            qpos = torch.arange(nk - nq, nk, device=q.device)
            window = self.applied_window or arch.sliding_window
            causal = window_keep(qpos, torch.arange(nk, device=q.device), window)
            keep = causal if keep is None else keep & causal
        bias = self.position_bias(nq, nk, q.shape[1], q.device)
        if bias is not None:
            bias = bias.to(q.dtype)
        if self.softcap_after_bias and arch.attn_softcap is not None:
            return self._capped_after_bias(q, k, v, keep, bias, arch)
        out, weights = grouped_attention(
            q, k, v, keep, bias, mapping=arch.kv_mapping, scale=arch.attn_scale, softcap=arch.attn_softcap
        )
        return out, weights

    def _capped_after_bias(
        self, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, bias: Tensor | None, arch: Architecture
    ) -> tuple[Tensor, Tensor]:
        """softmax(cap(scale * q k^T + B)) v: the soft-cap applied to the biased scores."""
        assert arch.attn_softcap is not None
        h = q.shape[1]
        k, v = repeat_kv(k, h, arch.kv_mapping), repeat_kv(v, h, arch.kv_mapping)
        scale = arch.attn_scale if arch.attn_scale is not None else q.shape[-1] ** -0.5
        scores = scale * q @ k.transpose(-2, -1)
        if bias is not None:
            scores = scores + bias
        scores = arch.attn_softcap * torch.tanh(scores / arch.attn_softcap)
        if keep is not None:
            scores = scores.masked_fill(~keep, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        return weights @ v, weights

    def lm_config(self, config: Any) -> Any:
        """The config the LM is really built from (the checks' one unless a subclass lies)."""
        return config

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """``VariantLM`` behind the reference's ``LMHandle``."""
        built = self.lm_config(config)
        return LMHandle(_build(lambda: VariantLM(built), state, device, dtype))
