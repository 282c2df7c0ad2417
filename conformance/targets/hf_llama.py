"""The ``hf-llama`` target: Hugging Face ``transformers``' ``LlamaForCausalLM``, built offline.

No weights are downloaded: the model is built from a tiny ``LlamaConfig`` of the check's sizes
(``HF_HUB_OFFLINE=1``). The adapter declares its architecture -- rotary positions (half-split
``rotate_half`` layout, theta 10000), RMSNorm, SwiGLU, grouped-query attention with 2 KV heads
(contiguous groups, ``repeat_kv``), no biases, pre-norm with a final norm, untied head -- so the checks
build a ``reference.variant_lm.VariantLM`` of it as the oracle and hand the adapter that model's
canonical state, which ``reference.name_tables.HF_LLAMA`` maps onto Llama's names (a name table, no
code). The differential check ``lm.reference`` then runs on the real model.

The handle drives the model as ``hf-gpt2``'s does (``conformance/targets/hf_gpt2.py``): explicit
``position_ids`` as absolute slots (the declared ``position_ids="slots"``), an ``attention_mask`` of
real tokens, a ``DynamicCache`` plus the remembered mask of its slots for ``step``. Attention runs on
``attn_implementation="sdpa"``. transformers computes the rotary angles in float32 whatever the model
dtype, so the target declares float32 only (a float64 model keeps float32 rotary errors).
"""

import importlib.util
from typing import Any

import torch
from torch import Tensor, nn

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.name_tables import HF_LLAMA, from_reference
from transformer_conformance.targets import TargetError
from transformer_conformance.targets.hf_gpt2 import (
    BUILD_SEED,
    IGNORE_INDEX,
    REQUIREMENT,
    GPT2Handle,
    _transformers,
    causal_lm_loss,
)

#: Key/value heads of the audited model (the checks' configs have 4 query heads: groups of 2).
NUM_KV_HEADS = 2

#: What ``LlamaForCausalLM`` is, in the reference's terms.
LLAMA_ARCHITECTURE = Architecture(
    positions="rotary",
    rope_theta=10000.0,
    rope_layout="half",
    norm="rmsnorm",
    activation="silu",
    gated=True,
    ffn_bias=False,
    num_kv_heads=NUM_KV_HEADS,
    kv_mapping="contiguous",
    qkv_bias=False,
    out_bias=False,
)


def llama_config(config: Any) -> Any:
    """A ``LlamaConfig`` of the reference config's sizes and declared architecture.

    Claims: lm.llama-equals-hf, gqa.repeat-equivalence, rmsnorm.formula, gated.formula.
    """
    if config.norm_placement != "pre":
        raise NotImplementedError(f"Llama is pre-norm only: norm_placement={config.norm_placement!r}")
    if config.arch != LLAMA_ARCHITECTURE:
        raise NotImplementedError(f"hf-llama builds only its declared architecture, got {config.arch}")
    if config.scale_embedding:
        raise NotImplementedError("Llama has no embedding scaling: scale_embedding=True is unsupported")
    transformers = _transformers()
    hf = transformers.LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        intermediate_size=config.d_ff,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.arch.kv_heads(config.num_heads),
        max_position_embeddings=config.max_len,
        rms_norm_eps=config.eps,
        rope_parameters={"rope_type": "default", "rope_theta": config.arch.rope_theta},
        attention_dropout=config.dropout,
        tie_word_embeddings=config.tie_embeddings,
        pad_token_id=config.pad_id,
        bos_token_id=config.bos_id,
        eos_token_id=config.eos_id,
        attn_implementation="sdpa",
    )
    return hf


def build_llama(
    config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
) -> nn.Module:
    """``LlamaForCausalLM`` (seeded random init, or the canonical VariantLM ``state`` mapped in by name)."""
    transformers = _transformers()
    hf_config = llama_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED)
        model: nn.Module = transformers.LlamaForCausalLM(hf_config)
    model = model.to(device=device, dtype=dtype)
    if state is not None:
        mapped = from_reference(state, HF_LLAMA, num_layers=config.num_layers, num_heads=config.num_heads)
        missing, unexpected = model.load_state_dict(mapped, strict=False)
        tied = {"lm_head.weight"} if config.tie_embeddings else set()
        if set(missing) - tied or unexpected:
            raise RuntimeError(f"Llama weight mapping: missing {missing}, unexpected {unexpected}")
    return model.eval()


class HFLlamaAdapter(Adapter):
    """``transformers.LlamaForCausalLM`` as a decoder-only LM (plus transformers' loss)."""

    name = "hf-llama"
    capabilities = frozenset({Capability.DECODER_LM, Capability.LOSS})
    conventions = Conventions(
        norm_placement="pre",
        layer_norm_eps=1e-6,
        loads_weights=True,
        # float32 only: transformers computes the rotary cos/sin in float32 whatever the model dtype, so
        # a float64 model carries float32 position errors (lm.reference measures ~1e-6 against the
        # float64 oracle) -- the float64 audit would only restate that.
        dtypes=(torch.float32,),
    )
    architecture = LLAMA_ARCHITECTURE

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> GPT2Handle:
        """``LlamaForCausalLM`` of the config's sizes behind the slot-position handle of ``hf-gpt2``."""
        return GPT2Handle(build_llama(config, state, device, dtype))

    def next_token_loss(self, logits: Tensor, ids: Tensor, pad_id: int | None) -> Tensor:
        """transformers' causal-LM loss (``LlamaForCausalLM(labels=...)``), pads as ``-100``.

        Claims: loss.shifted-cross-entropy, loss.ignores-padding.
        """
        labels = ids if pad_id is None else ids.masked_fill(ids == pad_id, IGNORE_INDEX)
        return causal_lm_loss(logits, labels)


def make() -> HFLlamaAdapter:
    """Factory for ``--impl hf-llama``; a clear usage error when ``transformers`` is not installed."""
    if importlib.util.find_spec("transformers") is None:
        raise TargetError(f"target 'hf-llama' needs {REQUIREMENT!r}: pip install '{REQUIREMENT}'")
    return HFLlamaAdapter()
