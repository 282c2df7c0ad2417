"""The ``hf-gpt2`` target: transformers' GPT-2 passes its audit (padded cached decoding and the causal-LM
loss included), and planted real-world adapter bugs (cache positions not offset, attention mask dropped,
positions counted from the first real token, a step mask that covers only the new chunk) are rejected by
the claim they break."""

from typing import Any

import pytest
import torch
from torch import Tensor

pytest.importorskip("transformers")

from transformer_conformance.api import run_audit
from transformer_conformance.targets.hf_gpt2 import GPT2Handle, HFGPT2Adapter

LM_CHECKS = [
    "lm.shape",
    "lm.padding-invariance",
    "lm.causality",
    "lm.cache-equals-recompute",
    "lm.chunked-prefill",
    "lm.reference",
]
LM_PADDED_CACHE_CHECKS = [*LM_CHECKS, "lm.cache-with-padding"]


def _audit(target: Any, device: torch.device, **kwargs: Any) -> Any:
    return run_audit([target], device=device, profile="ci", progress=False, **kwargs)


def _failed(report: Any) -> dict[str, list[str]]:
    """check id -> claims of every failing result."""
    return {r.check: r.claims for r in report.results if r.status == "fail"}


@pytest.mark.claim(
    "mask.padding.invariance",
    "mask.causal.future-blind",
    "kvcache.equals-recompute",
    "kvcache.chunked-prefill",
    "training.parallel-equals-sequential",
    "output.projection",
    "sampling.temperature-frequencies",
    "sampling.invalid-temperature",
    "loss.shifted-cross-entropy",
    "loss.ignores-padding",
)
def test_hf_gpt2_passes_its_audit(device: torch.device) -> None:
    report = _audit("hf-gpt2", device)
    assert report.exit_code == 0, report.summary_text()
    statuses = {r.check: r.status for r in report.results}
    # No known deviations are declared: every applicable LM and sampler check passes outright,
    # including the differential one (canonical weights mapped into GPT-2's layout), padded prompts
    # decoded on the DynamicCache, and transformers' own ForCausalLMLoss with pads labelled -100.
    passing = (
        *LM_PADDED_CACHE_CHECKS,
        "lm.teacher-forcing",
        "lm.batch-independence",
        "sampler.frequencies",
        "loss.value",
        "loss.ignores-padding",
    )
    for check_id in passing:
        assert statuses[check_id] == "pass", (check_id, statuses[check_id])
    assert not any(r.status == "known-deviation" for r in report.results)


class StepPositionsNotOffset(GPT2Handle):
    """Planted bug: step() restarts position_ids at 0 instead of at the cache length."""

    def step(self, ids_chunk: Tensor, cache: Any, pad_mask_chunk: Tensor | None = None) -> Tensor:
        b, c = ids_chunk.shape
        past = int(cache.kv.get_seq_length())
        mask = torch.ones(b, past + c, dtype=torch.long, device=ids_chunk.device)
        return self._run(
            ids_chunk,
            **self.cache_kwargs(cache),
            attention_mask=mask,
            position_ids=self.positions(ids_chunk, 0),
            use_cache=True,
        )


class AttentionMaskDropped(GPT2Handle):
    """Planted bug: logits() forgets to pass the attention mask (padding keys stay visible)."""

    def logits(self, ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        return self._run(ids, position_ids=self.positions(ids, 0), use_cache=False)


class PositionsFromFirstRealToken(GPT2Handle):
    """generate()'s convention, cumsum(mask) - 1: left-padded tokens sit at other positions than the
    spec's absolute slots, which only the differential check can see."""

    def logits(self, ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        if pad_mask is None:
            return super().logits(ids, pad_mask)
        positions = (pad_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self._run(ids, attention_mask=pad_mask.long(), position_ids=positions, use_cache=False)


class StepMaskOfChunkOnly(GPT2Handle):
    """Planted bug: step() passes attention_mask for the new chunk only, not past + chunk. transformers
    does not reject the short mask: it right-pads it with zeros (masking_utils.prepare_padding_mask), so
    on a warm cache the newest keys -- the token's own included -- are hidden, silently."""

    def step(self, ids_chunk: Tensor, cache: Any, pad_mask_chunk: Tensor | None = None) -> Tensor:
        b, c = ids_chunk.shape
        past = int(cache.kv.get_seq_length())
        ones = torch.ones(b, c, dtype=torch.long, device=ids_chunk.device)
        mask = ones if pad_mask_chunk is None else pad_mask_chunk.to(torch.long)
        return self._run(
            ids_chunk,
            **self.cache_kwargs(cache),
            attention_mask=mask,
            position_ids=self.positions(ids_chunk, past),
            use_cache=True,
        )


def _with_handle(handle: type[GPT2Handle]) -> HFGPT2Adapter:
    adapter = HFGPT2Adapter()
    adapter.name = f"hf-gpt2+{handle.__name__}"
    adapter.handle_class = handle
    return adapter


@pytest.mark.claim("kvcache.equals-recompute", "kvcache.chunked-prefill")
def test_step_positions_not_offset_is_rejected(device: torch.device) -> None:
    report = _audit(_with_handle(StepPositionsNotOffset), device, check=LM_CHECKS)
    assert report.exit_code == 1
    failed = _failed(report)
    assert "kvcache.equals-recompute" in failed["lm.cache-equals-recompute"], failed
    assert "lm.padding-invariance" not in failed and "lm.reference" not in failed, failed


@pytest.mark.claim("mask.padding.invariance")
def test_attention_mask_dropped_is_rejected(device: torch.device) -> None:
    report = _audit(_with_handle(AttentionMaskDropped), device, check=LM_CHECKS)
    assert report.exit_code == 1
    failed = _failed(report)
    assert "mask.padding.invariance" in failed["lm.padding-invariance"], failed
    assert "lm.cache-equals-recompute" not in failed, failed


@pytest.mark.claim("embedding.plus-positional")
def test_positions_from_first_real_token_differ_from_the_spec(device: torch.device) -> None:
    report = _audit(_with_handle(PositionsFromFirstRealToken), device, check=LM_CHECKS)
    failed = _failed(report)
    assert set(failed) == {"lm.reference"}, failed
    assert "embedding.plus-positional" in failed["lm.reference"]
    message = next(r.message for r in report.results if r.check == "lm.reference")
    assert "left-padded" in message, message


@pytest.mark.claim("kvcache.equals-recompute")
def test_step_mask_of_chunk_only_is_rejected_even_without_padding(device: torch.device) -> None:
    report = _audit(_with_handle(StepMaskOfChunkOnly), device, check=LM_PADDED_CACHE_CHECKS)
    assert report.exit_code == 1
    failed = _failed(report)
    # The prefill (empty cache) is right; every later step is wrong, padded or not.
    assert "kvcache.equals-recompute" in failed["lm.cache-equals-recompute"], failed
    assert "lm.padding-invariance" not in failed and "lm.reference" not in failed, failed


@pytest.mark.claim("kvcache.equals-recompute")
def test_cached_steps_use_the_supported_cache_argument() -> None:
    """No deprecation warning from transformers: ``past_key_values`` is deprecated (removal announced
    for 5.40); the handle passes the cache under the name the installed release supports."""
    import warnings

    run = _audit("hf-gpt2", torch.device("cpu"), check="lm.cache-equals-recompute")
    assert [r.status for r in run.results] == ["pass"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _audit("hf-gpt2", torch.device("cpu"), check="lm.cache-equals-recompute,lm.chunked-prefill")
    cache_warnings = [str(w.message) for w in caught if "past_key_values" in str(w.message)]
    assert cache_warnings == []
