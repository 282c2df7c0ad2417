"""Planted-bug mutants of the layer/model/decoding checks: each is rejected by the claim it breaks,
and correct targets with other declared conventions pass."""

from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import Tensor

from transformer_conformance.adapter import Capability, Conventions
from transformer_conformance.api import run_audit
from transformer_conformance.reference.decoder import DecoderLayer
from transformer_conformance.reference.masks import causal_mask, combine_masks, key_padding_to_attention_mask
from transformer_conformance.registry import all_checks
from transformer_conformance.targets.reference import ReferenceAdapter, _build

AREAS = ("encoder_layer", "decoder_layer", "lm", "encdec", "sampler", "loss")
MY_CHECKS = [c.id for c in all_checks() if c.id.split(".")[0] in AREAS]

MUTANTS = [
    ("mutant.kv-cache-offset", "kvcache.equals-recompute", "lm.cache-equals-recompute"),
    ("mutant.chunked-prefill-no-prefix", "kvcache.chunked-prefill", "lm.chunked-prefill"),
    ("mutant.cached-no-causal-mask", "kvcache.chunked-prefill", "lm.chunked-prefill"),
    ("mutant.cached-padding-ignored", "kvcache.equals-recompute", "lm.cache-with-padding"),
    ("mutant.padding-leak", "batch.independence", "lm.batch-independence"),
    ("mutant.dropout-in-eval", "determinism.eval", "lm.determinism"),
    ("mutant.temperature-zero-division", "sampling.invalid-temperature", "sampler.temperature-zero"),
    ("mutant.loss-counts-padding", "loss.ignores-padding", "loss.ignores-padding"),
    ("mutant.loss-no-shift", "loss.shifted-cross-entropy", "loss.value"),
    ("mutant.encdec-reencodes-each-step", "kvcache.cross-computed-once", "encdec.encodes-once"),
]


def _audit(target: Any, device: torch.device, checks: list[str] = MY_CHECKS) -> Any:
    return run_audit([target], check=checks, device=device, profile="ci", progress=False)


@pytest.mark.claim(
    "kvcache.equals-recompute",
    "kvcache.chunked-prefill",
    "batch.independence",
    "determinism.eval",
    "mask.padding.invariance",
    "sampling.invalid-temperature",
    "loss.ignores-padding",
    "loss.shifted-cross-entropy",
    "kvcache.cross-computed-once",
)
@pytest.mark.parametrize(("mutant", "claim", "check_id"), MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_is_rejected_by_its_claim(
    mutant: str, claim: str, check_id: str, device: torch.device
) -> None:
    report = _audit(mutant, device)
    by_check = {r.check: r for r in report.results}
    assert by_check[check_id].status == "fail", by_check[check_id]
    assert claim in by_check[check_id].claims
    assert report.exit_code != 0
    # The bug is caught where it lives: every check the mutant did not break still passes.
    errors = [r for r in report.results if r.status == "error"]
    assert not errors, errors


class PreLNReference(ReferenceAdapter):
    """The reference declaring (and using) pre-LN residuals: a correct target with another convention."""

    name = "reference-pre"
    conventions = Conventions(norm_placement="pre")


class DeclaresPreIsPost(ReferenceAdapter):
    """A post-LN layer that declares pre-LN: the residual-placement checks must notice."""

    name = "mislabelled-post"
    capabilities = frozenset({Capability.ENCODER_LAYER, Capability.DECODER_LAYER})
    conventions = Conventions(norm_placement="pre")

    def build_encoder_layer(self, config: Any, state: Any, device: torch.device, dtype: torch.dtype) -> Any:
        return super().build_encoder_layer(
            replace(config, norm_placement="post"), _post_state(state), device, dtype
        )

    def build_decoder_layer(self, config: Any, state: Any, device: torch.device, dtype: torch.dtype) -> Any:
        return super().build_decoder_layer(
            replace(config, norm_placement="post"), _post_state(state), device, dtype
        )


def _post_state(state: Any) -> Any:
    return state  # same parameter names for both placements


@pytest.mark.claim(
    "residual.post-ln", "residual.adds-update", "kvcache.chunked-prefill", "batch.independence"
)
def test_pre_ln_reference_passes_every_check(device: torch.device) -> None:
    checks = [c for c in MY_CHECKS if c.split(".")[0] in ("encoder_layer", "decoder_layer", "lm", "encdec")]
    report = _audit(PreLNReference(), device, checks)
    bad = [(r.check, r.status, r.message) for r in report.results if r.status != "pass"]
    assert not bad


@pytest.mark.claim("residual.post-ln")
def test_mislabelled_residual_placement_is_rejected(device: torch.device) -> None:
    report = _audit(
        DeclaresPreIsPost(),
        device,
        [
            "encoder_layer.shape",
            "encoder_layer.residual-placement",
            "decoder_layer.shape",
            "decoder_layer.residual-placement",
        ],
    )
    status = {r.check: r.status for r in report.results}
    assert status["encoder_layer.residual-placement"] == "fail"
    assert status["decoder_layer.residual-placement"] == "fail"


@pytest.mark.claim("kvcache.equals-recompute", "training.parallel-equals-sequential")
def test_cache_bug_fails_only_the_cache_checks(device: torch.device) -> None:
    """Teacher forcing is compared with uncached prefixes, so a KV-cache bug is blamed on the cache."""
    report = _audit("mutant.kv-cache-offset", device)
    status = {r.check: r.status for r in report.results}
    assert status["lm.teacher-forcing"] == "pass"
    assert status["lm.cache-equals-recompute"] == "fail"
    failing = {r.check for r in report.results if r.status == "fail"}
    assert failing and all(
        "kvcache.equals-recompute" in r.claims or "kvcache.chunked-prefill" in r.claims
        for r in report.results
        if r.check in failing
    )
    lm_checks = {c.id: c for c in all_checks() if c.id.startswith(("lm.", "encdec."))}
    for check_id in ("lm.cache-equals-recompute", "encdec.cache-equals-recompute"):
        assert "decoding.autoregressive" not in lm_checks[check_id].claims


@pytest.mark.claim("kvcache.equals-recompute", "mask.padding.invariance")
def test_padding_ignored_by_the_cached_step_is_caught_only_with_padding(device: torch.device) -> None:
    """The pad-blind step passes every unpadded cache check: only lm.cache-with-padding sees it."""
    report = _audit("mutant.cached-padding-ignored", device)
    failing = {r.check for r in report.results if r.status == "fail"}
    assert failing == {"lm.cache-with-padding"}
    spec = {c.id: c for c in all_checks()}["lm.cache-with-padding"]
    assert set(spec.claims) == {"kvcache.equals-recompute", "mask.padding.invariance"}


class StrictlyCausalDecoderLayer(DecoderLayer):
    """Planted bug: the self-attention hides the diagonal (each position sees only earlier ones)."""

    def causal_self_attention(self, h: Tensor, tgt_pad: Tensor | None, cache: Any) -> Tensor:
        t = h.shape[1]
        strict = causal_mask(t, t, device=h.device) & ~torch.eye(t, dtype=torch.bool, device=h.device)
        pad = None if tgt_pad is None else key_padding_to_attention_mask(tgt_pad)
        out: Tensor = self.self_attn(h, h, combine_masks(strict, pad))[0]
        return out


class DiagonalHiddenLayer(ReferenceAdapter):
    name = "decoder-layer-diagonal-hidden"
    capabilities = frozenset({Capability.DECODER_LAYER})

    def build_decoder_layer(self, config: Any, state: Any, device: torch.device, dtype: torch.dtype) -> Any:
        module = _build(lambda: StrictlyCausalDecoderLayer(config), state, device, dtype)
        return lambda x, memory, tgt_pad=None, mem_pad=None: module(x, memory, tgt_pad, mem_pad)


@pytest.mark.claim("mask.causal.diagonal-visible", "mask.causal.future-blind")
def test_hidden_diagonal_in_a_decoder_layer_is_caught_by_the_differential_check(device: torch.device) -> None:
    """Perturbing a layer input always moves its own output (the residual), so the causality check
    cannot see the diagonal and no longer claims it; the differential check rejects the bug."""
    checks = ["decoder_layer.shape", "decoder_layer.causality", "decoder_layer.reference"]
    report = _audit(DiagonalHiddenLayer(), device, checks)
    status = {r.check: r.status for r in report.results}
    assert status["decoder_layer.causality"] == "pass"  # still future-blind
    assert status["decoder_layer.reference"] == "fail"
    causality = {c.id: c for c in all_checks()}["decoder_layer.causality"]
    assert "mask.causal.diagonal-visible" not in causality.claims
