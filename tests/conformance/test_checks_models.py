"""The layer / model / sampler / loss checks: the reference passes them, torch's modules pass them up
to recorded (and real) deviations, and the statistics behind the sampler checks are right."""

import warnings

import pytest
import torch
from torch import nn

from transformer_conformance.api import run_audit
from transformer_conformance.checks import sampler
from transformer_conformance.checks.sampler import ALPHA, chi_square_p_value
from transformer_conformance.context import PROFILES
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.encoder import EncoderLayer
from transformer_conformance.registry import all_checks
from transformer_conformance.targets import torch_layers

AREAS = ("encoder_layer", "decoder_layer", "lm", "encdec", "sampler", "loss")
# The declared-architecture checks (checks/variants.py) are not-applicable to the notes-architecture
# reference by design; tests/conformance/test_declared_architecture.py audits them.
MY_CHECKS = [
    c.id for c in all_checks() if c.id.split(".")[0] in AREAS and not c.fn.__module__.endswith(".variants")
]
TORCH_TARGETS = [
    "torch-encoder-layer",
    "torch-encoder-layer-fastpath",
    "torch-decoder-layer",
    "torch-transformer",
    "torch-transformer-fastpath",
]


@pytest.mark.claim(
    "encoder.output-per-position",
    "mask.padding.invariance",
    "mask.padding.pad-value-arbitrary",
    "batch.independence",
    "mask.causal.future-blind",
    "attention.cross.memory-permutation-invariant",
    "residual.post-ln",
    "kvcache.equals-recompute",
    "kvcache.chunked-prefill",
    "kvcache.cross-computed-once",
    "training.parallel-equals-sequential",
    "determinism.eval",
    "sampling.temperature-frequencies",
    "sampling.temperature-limits",
    "sampling.invalid-temperature",
    "loss.shifted-cross-entropy",
    "loss.ignores-padding",
)
def test_reference_passes_every_check(device: torch.device) -> None:
    report = run_audit(
        ["reference"], check=MY_CHECKS, device=device, dtype="float32", profile="ci", progress=False
    )
    bad = [(r.check, r.status, r.message) for r in report.results if r.status != "pass"]
    assert not bad
    assert len(report.results) == len(MY_CHECKS)


@pytest.mark.claim(
    "mask.padding.invariance",
    "attention.fully-masked-row",
    "encdec.teacher-forcing",
    "kvcache.cross-computed-once",
)
def test_torch_modules_pass_up_to_recorded_deviations() -> None:
    report = run_audit(TORCH_TARGETS, check=MY_CHECKS, device="cpu", profile="ci", progress=False)
    assert report.exit_code == 0, [(r.target, r.check, r.message) for r in report.failures]
    assert not report.stale
    status = {(r.target, r.check): r.status for r in report.results}
    # The measured deviations (see conformance/deviations/torch-*.toml) ...
    assert status[("torch-encoder-layer-fastpath", "encoder_layer.fully-padded-sample")] == "known-deviation"
    assert status[("torch-transformer-fastpath", "encdec.padding-invariance")] == "known-deviation"
    # ... and what torch gets right, on both paths.
    for target in ("torch-encoder-layer", "torch-encoder-layer-fastpath"):
        assert status[(target, "encoder_layer.reference")] == "pass"
        assert status[(target, "encoder_layer.padding-invariance")] == "pass"
    assert status[("torch-transformer", "encdec.chunked-prefill")] == "pass"
    # padded decoder prompts on the recompute-the-prefix cache (tgt_pad_chunk); the fast path's
    # left-padding NaN (above) reaches them too
    assert status[("torch-transformer", "encdec.cache-with-padding")] == "pass"
    assert status[("torch-transformer-fastpath", "encdec.cache-with-padding")] == "known-deviation"
    assert status[("torch-transformer", "encdec.reference")] == "pass"
    # its recompute-the-prefix steps rerun the decoder only, never the encoder
    for target in ("torch-transformer", "torch-transformer-fastpath"):
        assert status[(target, "encdec.encodes-once")] == "pass"
    # a fully padded neighbour leaves the other sample alone on both paths
    for target in ("torch-encoder-layer", "torch-encoder-layer-fastpath"):
        assert status[(target, "encoder_layer.fully-padded-neighbour")] == "pass"
    assert status[("torch-encoder-layer", "encoder_layer.fully-padded-sample")] == "pass"


@pytest.mark.claim("mask.padding.invariance")
def test_torch_no_grad_decoder_spreads_nan_from_left_padding() -> None:
    """The counterexample behind the torch-transformer-fastpath deviation, in plain torch."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True), 2
        )
    decoder.eval()
    x, memory = torch.randn(1, 5, 16), torch.randn(1, 3, 16)
    pad = torch.tensor([[True, True, True, False, False]])  # torch: True = padding (left padding)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    with torch.no_grad():
        fast = decoder(x, memory, tgt_mask=causal, tgt_key_padding_mask=pad, tgt_is_causal=True)
    slow = decoder(x, memory, tgt_mask=causal, tgt_key_padding_mask=pad, tgt_is_causal=True).detach()
    assert torch.isnan(fast[0, 3:]).all()  # real positions poisoned on the no-grad path
    assert torch.isfinite(slow[0, 3:]).all()


def test_fastpath_target_really_takes_the_fused_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = torch._transformer_encoder_layer_fwd

    def spy(*args: object) -> torch.Tensor:
        calls.append(1)
        return original(*args)  # type: ignore[no-any-return]

    monkeypatch.setattr(torch, "_transformer_encoder_layer_fwd", spy)
    cfg = TransformerConfig.tiny()
    state = EncoderLayer(cfg).state_dict()
    x, pad = torch.randn(2, 3, cfg.d_model), torch.tensor([[False, False, True], [False, False, False]])
    for make, expected in (
        (torch_layers.make_encoder_layer_fastpath, 1),
        (torch_layers.make_encoder_layer, 0),
    ):
        calls.clear()
        layer = make().build_encoder_layer(cfg, state, torch.device("cpu"), torch.float32)
        layer(x, pad)
        assert len(calls) == expected


@pytest.mark.claim("sampling.temperature-frequencies")
def test_chi_square_p_values_match_tables() -> None:
    # Table values: the 95% quantile of chi-square(1) is 3.841, the 99.9% quantile of chi-square(7) 24.322.
    half = 0.5 * 3.841**0.5 * 10  # n = 100, p = (0.5, 0.5): chi2 = 2 * half^2 / 50 = 3.841
    counts = torch.tensor([50 + half, 50 - half], dtype=torch.float64)
    stat, p = chi_square_p_value(counts, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert abs(stat - 3.841) < 1e-9 and abs(p - 0.05) < 1e-3
    probs = torch.full((8,), 1 / 8, dtype=torch.float64)
    counts = torch.full((8,), 100.0, dtype=torch.float64)
    delta = (24.322 * 100 / 8) ** 0.5  # spread evenly over 8 cells: sum d^2 / 100 = 24.322
    counts = counts + delta * torch.tensor([1, -1] * 4, dtype=torch.float64)
    stat, p = chi_square_p_value(counts, probs)
    assert abs(stat - 24.322) < 1e-6 and abs(p - 1e-3) < 2e-5
    assert ALPHA == 1e-6


@pytest.mark.claim("sampling.temperature-frequencies")
def test_frequency_check_has_power_against_a_wrong_temperature(device: torch.device) -> None:
    """A sampler that uses softmax(logits * T) instead of softmax(logits / T) fails the frequency check."""
    from transformer_conformance.targets.reference import ReferenceAdapter

    class Inverted(ReferenceAdapter):
        name = "inverted-temperature"

        def sample(
            self, logits: torch.Tensor, temperature: float, generator: torch.Generator | None
        ) -> torch.Tensor:
            if temperature == 0:
                return logits.argmax(-1)
            probs = torch.softmax(logits.float() * temperature, -1)
            return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    report = run_audit(
        [Inverted()], check=["sampler.shape", "sampler.frequencies"], device=device, progress=False,
        in_process=True,  # a local class: it cannot be pickled to a worker process
    )
    assert {r.check: r.status for r in report.results}["sampler.frequencies"] == "fail"


@pytest.mark.claim("encdec.cache-padded-prompts")
def test_torch_transformer_step_that_drops_tgt_pad_chunk_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch-transformer handle keeps each chunk's padding with its history: a step that accepts
    ``tgt_pad_chunk`` but drops it fails encdec.cache-with-padding."""
    step = torch_layers.TorchTransformerHandle.step

    def pad_blind(self, tgt_chunk, memory, cache, src_pad=None, tgt_pad_chunk=None):  # type: ignore[no-untyped-def]
        return step(self, tgt_chunk, memory, cache, src_pad, None)

    monkeypatch.setattr(torch_layers.TorchTransformerHandle, "step", pad_blind)
    report = run_audit(
        ["torch-transformer"],
        profile="ci",
        progress=False,
        check=["encdec.cache-with-padding"],
        in_process=True,
    )
    assert {r.check: r.status for r in report.results}["encdec.cache-with-padding"] == "fail"


@pytest.mark.claim("sampling.temperature-frequencies", "sampling.temperature-limits")
@pytest.mark.parametrize("profile", ["quick", "ci"])
def test_statistical_sampler_checks_keep_their_false_alarm_rate_over_all_examples(
    profile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frequency and limit checks draw several examples; the levels of all their chi-square tests add
    up to at most ALPHA (Bonferroni over every example the profile runs)."""
    levels: dict[str, list[float]] = {}
    original = sampler.expect_distribution

    def spy(ctx, what, ids, probs, alpha):  # type: ignore[no-untyped-def]
        levels.setdefault(ctx.check_id, []).append(alpha)
        original(ctx, what, ids, probs, alpha)

    monkeypatch.setattr(sampler, "expect_distribution", spy)
    checks = ["sampler.shape", "sampler.frequencies", "sampler.temperature-limits"]
    report = run_audit(["reference"], check=checks, profile=profile, seed=3, progress=False, in_process=True)
    assert all(r.status == "pass" for r in report.results), [(r.check, r.message) for r in report.results]
    examples = PROFILES[profile].examples
    assert len(levels["sampler.frequencies"]) == 3 + examples
    assert len(levels["sampler.temperature-limits"]) == 1 + examples
    for alphas in levels.values():
        assert sum(alphas) <= ALPHA * (1 + 1e-12)
    assert sampler.alpha_per_test(3, 25) * 28 == pytest.approx(ALPHA)  # thorough: 3 fixed + 25 drawn


@pytest.mark.claim("sampling.invalid-temperature")
def test_sampler_accepting_minus_infinity_is_rejected() -> None:
    """invalid-temperature draws temperatures beyond its fixed -1, -1e-6 and NaN: a sampler that rejects
    those but lets -inf through (``temperature < 0`` written as ``-inf < temperature < 0``) fails, the
    counterexample shrinks to -inf."""
    from transformer_conformance.targets.reference import ReferenceAdapter

    class MinusInfinityPasses(ReferenceAdapter):
        name = "minus-infinity-passes"

        def sample(
            self, logits: torch.Tensor, temperature: float, generator: torch.Generator | None
        ) -> torch.Tensor:
            if temperature == float("-inf"):
                return logits.argmax(-1)
            return super().sample(logits, temperature, generator)

    report = run_audit(
        [MinusInfinityPasses()],
        check=["sampler.invalid-temperature"],
        profile="thorough",
        seed=5,
        progress=False,
        in_process=True,
    )
    (result,) = report.results
    assert result.status == "fail", result.message
    assert result.counterexample["source"] == "drawn" and result.counterexample["example"]["t"] == "-inf"
