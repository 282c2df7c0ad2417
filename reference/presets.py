"""Example configurations shaped as well-known model families (sizes are the caller's).

Each returns a ``TransformerConfig`` whose ``arch`` declares the family's conventions; pass the sizes
(``vocab_size``, ``d_model``, ``num_heads``, ``d_ff``, ``num_layers``, ...) as keywords.
"""

from dataclasses import replace
from typing import Any

from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.config import TransformerConfig


def llama(*, num_kv_heads: int | None = None, rope_theta: float = 10000.0, **sizes: Any) -> TransformerConfig:
    """Llama: RoPE (half layout), RMSNorm, SwiGLU, GQA, no biases, pre-LN + final norm, untied head.

    Claims: lm.llama-equals-hf.
    """
    arch = Architecture(
        positions="rotary",
        rope_theta=rope_theta,
        rope_layout="half",
        norm="rmsnorm",
        activation="silu",
        gated=True,
        ffn_bias=False,
        num_kv_heads=num_kv_heads,
        qkv_bias=False,
        out_bias=False,
    )
    return TransformerConfig(**{"eps": 1e-6, **sizes, "norm_placement": "pre", "arch": arch})


def mistral(*, sliding_window: int, **kwargs: Any) -> TransformerConfig:
    """Mistral: Llama's architecture with a sliding window.

    Claims: window.blind-outside, lm.mistral-equals-hf.
    """
    config = llama(**kwargs)
    return replace(config, arch=replace(config.arch, sliding_window=sliding_window))


def gpt_neox(*, rope_fraction: float = 0.25, rope_theta: float = 10000.0, **sizes: Any) -> TransformerConfig:
    """GPT-NeoX: partial RoPE (half layout), LayerNorm, GELU, biases, parallel block with two norms.

    Claims: lm.neox-equals-hf, block.parallel-formula.
    """
    arch = Architecture(
        positions="rotary",
        rope_theta=rope_theta,
        rope_fraction=rope_fraction,
        rope_layout="half",
        activation="gelu",
        block="parallel",
    )
    return TransformerConfig(**{**sizes, "norm_placement": "pre", "arch": arch})
