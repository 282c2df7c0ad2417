"""The generic ``hf-causal-lm:<model_type>`` target: tiny offline builds of transformers' decoder-only
architectures pass the metamorphic LM checks and the loss checks; the name resolves through the
built-in target table; the shrinking keeps grouped-query ratios valid."""

from typing import Any

import pytest
import torch

pytest.importorskip("transformers")

from transformer_conformance.api import run_audit
from transformer_conformance.targets import TargetError, resolve_target
from transformer_conformance.targets.hf_causal_lm import (
    HFCausalLMAdapter,
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
    # the differential check needs canonical weights, which a generic adapter cannot map
    assert statuses["lm.reference"] == "not-applicable"


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
