"""The generic ``hf-causal-lm:<model_type>`` target: tiny offline builds of transformers' decoder-only
architectures pass the metamorphic LM checks and the loss checks; model types with a name table declare
their architecture and pass the differential check (a wrong table or declaration fails it); the name
resolves through the built-in target table; the shrinking keeps grouped-query ratios valid."""

from dataclasses import replace
from typing import Any

import pytest
import torch

pytest.importorskip("transformers")

from transformer_conformance.api import run_audit
from transformer_conformance.reference.name_tables import HF_LLAMA, NameTable
from transformer_conformance.targets import TargetError, resolve_target
from transformer_conformance.targets.hf_causal_lm import (
    LAYOUTS,
    HFCausalLMAdapter,
    declared_architecture,
    generate_positions,
    tiny_config,
)

METAMORPHIC = [
    "lm.shape",
    "lm.causality",
    "lm.padding-invariance",
    "lm.batch-independence",
    "lm.cache-equals-recompute",
    "lm.chunked-prefill",
    "lm.cache-with-padding",
    "lm.teacher-forcing",
    "lm.determinism",
    "loss.value",
    "loss.ignores-padding",
]


@pytest.mark.claim(
    "mask.padding.invariance",
    "mask.causal.future-blind",
    "batch.independence",
    "kvcache.equals-recompute",
    "kvcache.chunked-prefill",
    "training.parallel-equals-sequential",
    "determinism.eval",
    "loss.shifted-cross-entropy",
    "loss.ignores-padding",
)
@pytest.mark.parametrize("model_type", ["llama", "gpt2", "bloom"])
def test_model_type_passes_the_metamorphic_audit(model_type: str, device: torch.device) -> None:
    # llama: RoPE + GQA with explicit position ids; gpt2: learned positions; bloom: ALiBi, no position ids
    report = run_audit([f"hf-causal-lm:{model_type}"], device=device, profile="ci", progress=False)
    statuses = {r.check: r.status for r in report.results}
    assert report.exit_code == 0, report.summary_text()
    assert {c: statuses[c] for c in METAMORPHIC} == dict.fromkeys(METAMORPHIC, "pass")
    # differential where a name table exists (llama); the others cannot take the canonical weights
    assert statuses["lm.reference"] == ("pass" if model_type == "llama" else "not-applicable")


def _reference_status(adapter: HFCausalLMAdapter) -> str:
    report = run_audit([adapter], profile="ci", progress=False, check=["lm.reference"])
    return str(report.results[0].status)


@pytest.mark.claim(
    "lm.llama-equals-hf", "lm.neox-equals-hf", "gqa.repeat-equivalence", "window.blind-outside"
)
@pytest.mark.parametrize("model_type", ["mistral", "qwen2", "gpt_neox"])
def test_name_table_model_types_run_and_pass_the_differential_check(model_type: str) -> None:
    # mistral: GQA + a window of 4; qwen2: q/k/v biases; gpt_neox: fused per-head qkv, partial RoPE, parallel
    adapter = HFCausalLMAdapter(model_type)
    assert adapter.conventions.loads_weights
    assert _reference_status(adapter) == "pass"


def test_the_declared_architecture_is_read_from_the_model_types_config() -> None:
    arch = {t: declared_architecture(tiny_config(t, vocab_size=23), LAYOUTS[t]) for t in LAYOUTS}
    assert (arch["mistral"].num_kv_heads, arch["mistral"].sliding_window) == (2, 4)
    assert (arch["qwen2"].qkv_bias, arch["qwen2"].out_bias, arch["qwen2"].sliding_window) == (
        True,
        False,
        None,
    )
    neox = arch["gpt_neox"]
    assert (neox.norm, neox.block, neox.rope_fraction, neox.gated, neox.activation) == (
        "layernorm",
        "parallel",
        0.25,
        False,
        "gelu",
    )
    assert arch["llama"].position_ids == "from_first_token" and not arch["llama"].qkv_bias


@pytest.mark.claim("lm.llama-equals-hf")
def test_a_wrong_name_table_fails_the_differential_check() -> None:
    swapped = tuple(
        (src.replace("gate_proj", "TMP").replace("up_proj", "gate_proj").replace("TMP", "up_proj"), dst, how)
        for src, dst, how in HF_LLAMA.rules
    )
    wrong = replace(LAYOUTS["llama"], table=NameTable("gate/up swapped", swapped, HF_LLAMA.ignore))
    assert _reference_status(HFCausalLMAdapter("llama", layout=wrong)) == "fail"


@pytest.mark.claim("lm.mistral-equals-hf", "gqa.repeat-equivalence")
@pytest.mark.parametrize("wrong", [{"sliding_window": None}, {"kv_mapping": "tiled"}, {"rope_theta": 500.0}])
def test_a_wrong_declared_architecture_fails_the_differential_check(wrong: dict[str, Any]) -> None:
    right = HFCausalLMAdapter("mistral").architecture
    assert right is not None
    adapter = HFCausalLMAdapter("mistral", architecture=replace(right, **wrong))
    assert _reference_status(adapter) == "fail"


def test_resolver_builds_the_generic_adapter_for_the_model_type() -> None:
    adapter: Any = resolve_target("hf-causal-lm:mistral")
    assert isinstance(adapter, HFCausalLMAdapter)
    assert (adapter.name, adapter.model_type) == ("hf-causal-lm:mistral", "mistral")
    with pytest.raises(TargetError, match="no causal-LM model type"):
        resolve_target("hf-causal-lm:no-such-model")


def test_tiny_config_shrinks_and_keeps_grouped_query_ratio() -> None:
    cfg = tiny_config("mistral", vocab_size=23)  # default: 32 heads, 8 key/value heads
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size) == (2, 32, 23)
    assert cfg.num_attention_heads % cfg.num_key_value_heads == 0
    assert cfg.num_key_value_heads < cfg.num_attention_heads
    assert cfg.head_dim * cfg.num_attention_heads == cfg.hidden_size
    gemma = tiny_config("gemma2", vocab_size=23)  # per-layer types follow the layer count
    assert len(gemma.layer_types) == gemma.num_hidden_layers == 2


def test_positions_count_from_the_first_real_token() -> None:
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert generate_positions(mask).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]


@pytest.mark.claim("kvcache.equals-recompute")
def test_mistral_window_of_one_cache_disagrees_with_recompute() -> None:
    """A real finding (docs/findings/mistral_sliding_window_1_cache.py): transformers 5.24's sliding-window
    cache keeps ``keys[:, :, -w + 1:]``, every key for w = 1, so Mistral's cached steps see the whole past
    while the full forward sees one token. The audit catches it; a window of 2 passes. If a newer
    transformers fixes the slice, this test fails: update the finding and the README table."""
    failing = run_audit(
        [HFCausalLMAdapter("mistral", sliding_window=1)],
        profile="ci",
        progress=False,
        check=["lm.cache-equals-recompute"],
    )
    assert [r.status for r in failing.results] == ["fail"]
    passing = run_audit(
        [HFCausalLMAdapter("mistral", sliding_window=2)],
        profile="ci",
        progress=False,
        check=["lm.cache-equals-recompute"],
    )
    assert [r.status for r in passing.results] == ["pass"]
