"""The component checks (attention, masks, MHA, LayerNorm, FFN, positional) on correct targets.

The reference must pass every one of them; the torch targets must pass apart from their declared
deviations (which must actually occur: a stale entry fails the run), and CUDA-only SDPA backends
must be reported clearly on a machine without CUDA.
"""

from typing import Any

import pytest
import torch

from transformer_conformance.api import run_audit
from transformer_conformance.html import render_html
from transformer_conformance.registry import all_checks

MODULES = ("attention", "masks", "mha", "layernorm", "ffn", "positional")
COMPONENT_CHECKS = [c.id for c in all_checks() if c.fn.__module__.rsplit(".", 1)[-1] in MODULES]


def audit(target: Any, device: torch.device, dtype: str = "float32") -> Any:
    return run_audit(
        [target], check=COMPONENT_CHECKS, device=device, dtype=dtype, profile="ci", progress=False
    )


def statuses(report: Any) -> dict[str, str]:
    return {r.check: r.status for r in report.results}


def test_component_checks_are_registered_with_known_capabilities() -> None:
    specs = [c for c in all_checks() if c.id in COMPONENT_CHECKS]
    claimed = {claim for spec in specs for claim in spec.claims}
    # the claim marker of the reference test lists exactly what the component checks realise
    marks = test_reference_passes_every_component_check.pytestmark  # type: ignore[attr-defined]
    marked = {claim for mark in marks if mark.name == "claim" for claim in mark.args}
    assert claimed == marked
    assert len(specs) >= 35
    for spec in specs:
        assert spec.needs, spec.id
        assert spec.doc, spec.id
        for dep in spec.depends_on:
            assert dep in COMPONENT_CHECKS, (spec.id, dep)


@pytest.mark.claim(
    "attention.convex-combination",
    "attention.cross.memory-permutation-invariant",
    "attention.cross.no-causal-mask",
    "attention.cross.sources",
    "attention.formula",
    "attention.fully-masked-row",
    "attention.half-precision-softmax",
    "attention.pattern-quadratic",
    "attention.permutation-equivariance",
    "attention.scale.sqrt-dk",
    "attention.score-is-dot-product",
    "attention.self.same-input",
    "attention.shapes",
    "attention.weights.column-layout",
    "attention.weights.range",
    "attention.weights.rows-sum-to-one",
    "batch.independence",
    "determinism.eval",
    "ffn.position-wise",
    "ffn.widen-then-project",
    "layernorm.formula",
    "layernorm.per-sample",
    "layernorm.position-wise",
    "layernorm.zero-mean-unit-var",
    "mask.boolean-equals-additive",
    "mask.causal.additive-form",
    "mask.causal.alignment",
    "mask.causal.batch-shared",
    "mask.causal.boolean-lower-triangular",
    "mask.causal.diagonal-visible",
    "mask.causal.future-blind",
    "mask.finite-negative",
    "mask.neg-inf-exact-zero",
    "mask.padding.invariance",
    "mask.padding.pad-value-arbitrary",
    "mha.concat-width",
    "mha.fused-equals-per-head",
    "mha.output-sum-of-heads",
    "mha.shape-preserving",
    "mha.split-merge-roundtrip",
    "positional.sinusoidal.any-length",
    "positional.sinusoidal.bounded",
    "positional.sinusoidal.formula",
    "positional.sinusoidal.offset-dot-product",
    "positional.sinusoidal.relative-linear",
    "mask.padding.nonfinite-isolated",
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reference_passes_every_component_check(device: torch.device, dtype: str) -> None:
    report = audit("reference", device, dtype)
    bad = [
        (r.check, r.status, r.message)
        for r in report.results
        if r.status != "pass" and not (r.check in DECLARED_ONLY and r.status == "not-applicable")
    ]
    assert not bad
    assert report.exit_code == 0


#: Checks that judge a declared convention other than the project's: not applicable to the reference.
DECLARED_ONLY = ("attention.fully-masked-row.declared", "mha.fully-masked-row.declared")


@pytest.mark.claim("attention.fully-masked-row", "attention.weights.rows-sum-to-one")
def test_nan_declaring_mha_is_not_credited_with_the_zero_policy(device: torch.device) -> None:
    """torch-mha declares fully_masked_row='nan': the policy check is not applicable (the matrix does
    not credit it with the zero policy) while its declared behaviour is verified separately."""
    got = statuses(audit("torch-mha", device))
    assert got["mha.fully-masked-row"] == "not-applicable"
    assert got["mha.fully-masked-row.declared"] == "pass"
    assert statuses(audit("reference", device))["mha.fully-masked-row"] == "pass"


@pytest.mark.claim("attention.pattern-quadratic", "mask.causal.additive-form")
def test_weightless_or_additive_less_targets_are_not_credited(device: torch.device) -> None:
    """A target returning no weights cannot show the n_q x n_k pattern; one without an additive-mask
    entry point cannot show the additive causal bias: both checks are not applicable there."""
    sdpa = statuses(audit("torch-sdpa-math", device))
    assert sdpa["attention.weights.shape"] == "not-applicable"
    assert sdpa["attention.shapes"] == "pass"
    assert sdpa["mask.causal.additive"] == "pass"  # SDPA takes a float mask
    ref = statuses(audit("reference", device))
    assert ref["attention.weights.shape"] == "pass"
    assert ref["mask.causal.additive"] == "pass"
    spec = {c.id: c for c in all_checks()}
    assert "attention.pattern-quadratic" not in spec["attention.shapes"].claims
    assert "mask.causal.additive-form" not in spec["mask.causal.differential"].claims


@pytest.mark.claim("attention.half-precision-softmax", "attention.formula")
def test_reference_passes_attention_checks_in_bfloat16(device: torch.device) -> None:
    checks = [c for c in COMPONENT_CHECKS if c.startswith(("attention.", "mask."))]
    report = run_audit(
        ["reference"], check=checks, device=device, dtype="bfloat16", profile="quick", progress=False
    )
    bad = [
        (r.check, r.status, r.message)
        for r in report.results
        if r.status != "pass" and not (r.check in DECLARED_ONLY and r.status == "not-applicable")
    ]
    assert not bad


# target -> the checks expected to end as known deviations (each is a real counterexample)
TORCH_TARGETS = {
    "torch-sdpa-math": {"mask.padding.nan-contents"},
    "torch-sdpa-flash": {"mask.padding.nan-contents", "attention.shapes.value-width"},
    "torch-mha": {"mha.padding.nan-contents"},
    "torch-gqa": {"mask.padding.nan-contents", "mha.padding.nan-contents"},
    "torch-layernorm": set(),
}


@pytest.mark.claim(
    "mask.padding.invariance",
    "mask.causal.alignment",
    "attention.fully-masked-row",
    "layernorm.formula",
    "mha.fused-equals-per-head",
)
@pytest.mark.parametrize("target", sorted(TORCH_TARGETS))
def test_torch_targets_pass_except_declared_deviations(target: str, device: torch.device) -> None:
    if device.type == "cuda" and target == "torch-sdpa-flash":
        pytest.skip("CUDA flash declares float16/bfloat16 only; float32 is not applicable")
    report = audit(target, device)
    got = statuses(report)
    deviations = {check for check, status in got.items() if status == "known-deviation"}
    assert deviations == TORCH_TARGETS[target]
    assert not [c for c, s in got.items() if s in ("fail", "error", "blocked")]
    assert any(s == "pass" for s in got.values())
    assert report.stale == []
    assert report.exit_code == 0


@pytest.mark.claim("mask.padding.invariance")
def test_sdpa_nan_padding_counterexample_is_real(device: torch.device) -> None:
    """The deviation entries describe real behaviour: NaN in a masked key poisons SDPA's output."""
    q = torch.randn(1, 1, 2, 4, device=device)
    k = torch.randn(1, 1, 3, 4, device=device)
    v = torch.randn(1, 1, 3, 4, device=device)
    keep = torch.tensor([[True, True, False]], device=device)
    v[..., 2, :] = float("nan")
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    assert torch.isnan(out).all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: the backends exist")
@pytest.mark.parametrize("target", ["torch-sdpa-efficient", "torch-sdpa-cudnn"])
def test_cuda_only_backends_are_all_not_applicable_without_cuda(target: str) -> None:
    report = audit(target, torch.device("cpu"))
    assert {r.status for r in report.results} == {"not-applicable"}
    assert report.targets[0].problems and "not available" in report.targets[0].problems[0]
    # nothing was verified: reported loudly, and it fails the gate unless that is accepted
    assert report.empty == [target] and report.exit_code == 1
    assert f"EMPTY target {target}" in report.summary_text()
    assert run_audit([target], device="cpu", profile="ci", progress=False, allow_empty=True).exit_code == 0
    # the Markdown report gives the same verdict as the console: failing when gated, harmless when not
    assert "nothing was verified (fails the gate; --allow-empty accepts it)" in report.markdown()
    ungated = run_audit(["reference", target], device="cpu", profile="ci", progress=False, gate="reference",
                        check=["attention.shapes"])
    assert ungated.exit_code == 0 and ungated.empty == [target]
    console = ungated.summary_text()
    assert f"EMPTY target {target}: no check applied, nothing was verified (not gated)" in console
    assert "nothing was verified (not gated)" in ungated.markdown()
    page = render_html(ungated)
    banner = f"EMPTY target <code>{target}</code></strong>: no check applied, nothing was verified"
    assert f"{banner} (not gated)" in page
