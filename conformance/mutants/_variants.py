"""A correct target for the declared-architecture checks, which the variant mutants break one way each.

``DeclaredVariantAdapter`` serves attention with ``reference.grouped.grouped_attention`` under the
architecture it declares for ``Capability.ATTENTION`` (grouped KV heads, mapping, scale, soft-cap, a
sliding window on ``is_causal``) and its LM with ``reference.variant_lm.VariantLM`` of the config the
checks pass (built from its declared ``architecture``). Subclasses change the declaration or the
computation. (A private module: test_teeth.py audits only the public mutant modules.)
"""

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.grouped import grouped_attention, window_keep
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

    def attention_arch(self) -> Architecture:
        """The architecture the attention computes (the declared one unless a subclass lies)."""
        return self.architecture_for(Capability.ATTENTION)

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Grouped attention of the declared architecture; ``is_causal``: bottom-right, windowed."""
        arch = self.attention_arch()
        keep = mask
        if is_causal:
            nq, nk = q.shape[-2], k.shape[-2]
            qpos = torch.arange(nk - nq, nk, device=q.device)
            window = self.applied_window or arch.sliding_window
            causal = window_keep(qpos, torch.arange(nk, device=q.device), window)
            keep = causal if keep is None else keep & causal
        out, weights = grouped_attention(
            q, k, v, keep, mapping=arch.kv_mapping, scale=arch.attn_scale, softcap=arch.attn_softcap
        )
        return out, weights

    def lm_config(self, config: Any) -> Any:
        """The config the LM is really built from (the checks' one unless a subclass lies)."""
        return config

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """``VariantLM`` behind the reference's ``LMHandle``."""
        built = self.lm_config(config)
        return LMHandle(_build(lambda: VariantLM(built), state, device, dtype))
