"""Tests of the runner, context, deviations and reports, using fake targets and an isolated registry.

Every planted failure mode (raise, hang, wrong shape, NaN, broken declaration, harness bug) must be
reported with its own kind; the reports must carry claims, inputs, errors and the repro command.
"""

import io
import json
import xml.etree.ElementTree as ET

import pytest
import torch

from transformer_conformance.api import SEED_ENV, ReportPaths, UsageError, run_audit, select_checks
from transformer_conformance.context import PROFILES, CheckContext, CheckFailure, FailureKind, derive_seed
from transformer_conformance.registry import Registry
from transformer_conformance.report import AuditReport, TargetSummary, aggregate
from transformer_conformance.runner import CheckResult, order_checks, python_command

from . import fakes


def audit(*adapters, registry=fakes.REGISTRY, **kwargs):
    kwargs.setdefault("progress", False)
    return run_audit(list(adapters), registry=registry, **kwargs)


def result(report, target, check):
    return next(r for r in report.results if r.target == target and r.check == check)


@pytest.fixture(autouse=True)
def _release_hangs():
    fakes.HANG_RELEASE.clear()
    yield
    fakes.HANG_RELEASE.set()


def test_good_target_passes_and_missing_capability_is_not_applicable():
    report = audit(fakes.GoodAdapter())
    assert result(report, "fake-good", "dummy.attention").status == "pass"
    assert result(report, "fake-good", "dummy.rows").status == "pass"
    na = result(report, "fake-good", "dummy.layernorm")
    assert na.status == "not-applicable"
    assert na.missing == ["layer_norm"] and "layer_norm" in na.message
    assert report.exit_code == 0


@pytest.mark.parametrize("in_process", [False, True], ids=["isolated", "in-process"])
def test_raised_failure_shows_the_targets_traceback_only(in_process):
    report = audit(fakes.RaisingAdapter(), seed=7, in_process=in_process)
    trace = result(report, "fake-raising", "dummy.attention").traceback or ""
    assert "the target's frames only" in trace
    assert "fakes.py" in trace and "in attention" in trace and "RuntimeError: kernel exploded" in trace
    for harness in ("worker.py", "context.py", "runner.py", "isolation.py"):
        assert harness not in trace, trace


@pytest.mark.parametrize("in_process", [False, True], ids=["isolated", "in-process"])
def test_warnings_of_the_target_are_captured_per_check(in_process):
    report = audit(fakes.WarningAdapter(), seed=7, in_process=in_process)
    r = result(report, "fake-warning", "dummy.attention")
    assert r.status == "pass"
    assert [w.split(" (")[0] for w in r.warnings] == ["UserWarning: this kernel is deprecated"]
    assert "fakes.py:" in r.warnings[0]


def test_raising_target_is_a_raised_failure_and_blocks_dependents():
    report = audit(fakes.RaisingAdapter(), seed=7)
    r = result(report, "fake-raising", "dummy.attention")
    assert (r.status, r.failure_kind) == ("fail", "raised")
    assert "kernel exploded" in r.message and "RuntimeError" in r.message
    assert r.repro == (
        f"{python_command()} -m transformer_conformance run --impl fake-raising --check dummy.attention "
        "--seed 7 "
        "--device cpu --dtype float32 --profile ci --checks-from tests.conformance.fakes:REGISTRY"
    )
    assert python_command() != "python"  # the interpreter running the audit, not a bare name
    blocked = result(report, "fake-raising", "dummy.rows")
    assert blocked.status == "blocked" and blocked.blocked_by == "dummy.attention"
    assert "dummy.attention" in blocked.message
    assert report.exit_code == 1


def test_hanging_target_times_out_and_the_run_goes_on():
    # 1 s: short for the hang, long enough for the good target on a loaded machine
    report = audit(fakes.HangingAdapter(), fakes.GoodAdapter(), timeout=1.0)
    r = result(report, "fake-hanging", "dummy.attention")
    assert (r.status, r.failure_kind) == ("fail", "timeout")
    assert r.allowed == pytest.approx(1.0) and r.measured is None
    assert r.duration_s < 5
    text = report.failure_text(r)
    assert "timed out after 1.0 s" in text and "None" not in text
    assert r.repro.endswith("--timeout 1")
    # the run went on: the next target was audited normally
    assert result(report, "fake-good", "dummy.attention").status == "pass"


@pytest.mark.parametrize(
    ("adapter", "kind"),
    [(fakes.WrongShapeAdapter(), "shape"), (fakes.NaNAdapter(), "nonfinite")],
)
def test_wrong_shape_and_nan_get_their_kinds(adapter, kind):
    report = audit(adapter)
    r = result(report, adapter.name, "dummy.attention")
    assert (r.status, r.failure_kind) == ("fail", kind)
    assert r.inputs["q"] == {"shape": [1, 2, 3, 4], "dtype": "float32", "device": "cpu"}


def test_harness_bug_is_error_and_property_failure_keeps_measured_and_allowed():
    report = audit(fakes.GoodAdapter(), registry=fakes.BUGGY_REGISTRY)
    bug = result(report, "fake-good", "dummy.harness-bug")
    assert bug.status == "error" and "ZeroDivisionError" in bug.message and bug.traceback
    prop = result(report, "fake-good", "dummy.property")
    assert (prop.failure_kind, prop.measured, prop.allowed) == ("property", 1.5, 1.0)
    assert report.exit_code == 1


def test_undeclared_dtype_is_not_applicable():
    report = audit(fakes.Float64OnlyAdapter(), dtype="float32")
    assert {r.status for r in report.results} == {"not-applicable"}
    assert audit(fakes.Float64OnlyAdapter(), dtype="float64").exit_code == 0


def test_declared_but_unimplemented_capability_is_reported():
    adapter = fakes.BrokenDeclarationAdapter()
    report = audit(adapter)
    assert report.targets[0].problems == ["declares 'layer_norm' but does not override build_layer_norm()"]
    r = result(report, adapter.name, "dummy.layernorm")
    assert (r.status, r.failure_kind) == ("fail", "raised")


def test_gate_limits_which_targets_set_the_exit_code():
    assert audit(fakes.GoodAdapter(), fakes.NaNAdapter()).exit_code == 1
    assert audit(fakes.GoodAdapter(), fakes.NaNAdapter(), gate="fake-good").exit_code == 0
    with pytest.raises(UsageError, match="--gate"):
        audit(fakes.GoodAdapter(), gate="nope")


def write_deviation(tmp_path, target, body):
    (tmp_path / f"{target}.toml").write_text(body, encoding="utf-8")
    return tmp_path


def test_known_deviation_turns_failure_into_dev(tmp_path):
    d = write_deviation(
        tmp_path,
        "fake-nan",
        '[[deviation]]\nclaim = "attention.formula"\n'
        'check = "dummy.attention"\ncategory = "bug"\nreason = "NaN everywhere"\n',
    )
    report = audit(fakes.NaNAdapter(), deviations_dir=d)
    r = result(report, "fake-nan", "dummy.attention")
    assert r.status == "known-deviation" and r.deviation["reason"] == "NaN everywhere"
    assert report.stale == [] and report.exit_code == 0
    # a known deviation still blocks dependents (they could not run meaningfully)
    assert result(report, "fake-nan", "dummy.rows").status == "blocked"


def test_stale_deviation_fails_the_run(tmp_path):
    d = write_deviation(
        tmp_path,
        "fake-good",
        '[[deviation]]\nclaim = "attention.formula"\ncategory = "bug"\nreason = "was broken once"\n',
    )
    report = audit(fakes.GoodAdapter(), deviations_dir=d)
    assert len(report.stale) == 1 and "matches no failing check" in report.stale[0]["why"]
    assert report.exit_code == 1


def test_deviation_for_unknown_claim_is_stale_and_other_dtype_is_not_judged(tmp_path):
    body = (
        '[[deviation]]\nclaim = "no.such.claim"\ncategory = "bug"\nreason = "typo"\n\n'
        '[[deviation]]\nclaim = "attention.formula"\ncategory = "precision"\n'
        'reason = "half only"\ndtypes = ["float16"]\n'
    )
    d = write_deviation(tmp_path, "fake-good", body)
    report = audit(fakes.GoodAdapter(), deviations_dir=d)
    assert [s["index"] for s in report.stale] == [1]
    assert "no registered check" in report.stale[0]["why"]


def test_malformed_deviation_file_is_a_usage_error(tmp_path):
    body = '[[deviation]]\nclaim = "attention.formula"\ncategory = "oops"\nreason = "x"\n'
    d = write_deviation(tmp_path, "fake-good", body)
    with pytest.raises(UsageError, match="category"):
        audit(fakes.GoodAdapter(), deviations_dir=d)


def test_selection_by_claim_pattern_and_check_id():
    assert [s.id for s in select_checks(fakes.REGISTRY, claims="attention.weights.*")] == ["dummy.rows"]
    assert [s.id for s in select_checks(fakes.REGISTRY, check="dummy.layernorm")] == ["dummy.layernorm"]
    with pytest.raises(UsageError, match="unknown check"):
        select_checks(fakes.REGISTRY, check="dummy.nope")
    with pytest.raises(UsageError, match="matches no claim"):
        select_checks(fakes.REGISTRY, claims="zzz.*")


def test_isolated_registry_rejects_duplicates_and_orders_dependencies():
    reg = Registry()
    reg.check("b", claims=("attention.formula",), depends_on=("a",))(lambda ctx: None)
    reg.check("a", claims=("attention.formula",))(lambda ctx: None)
    assert [s.id for s in order_checks(reg.all())] == ["a", "b"]
    with pytest.raises(ValueError, match="twice"):
        reg.check("a", claims=("attention.formula",))(lambda ctx: None)
    with pytest.raises(ValueError, match="claims"):
        reg.check("c", claims=())


def test_context_inputs_are_reproducible_and_device_independent():
    def make(seed):
        return CheckContext(
            fakes.GoodAdapter(),
            device=torch.device("cpu"),
            dtype=torch.float32,
            profile=PROFILES["ci"],
            seed=seed,
            check_id="x",
        )

    a, b, c = make(1), make(1), make(2)
    assert torch.equal(a.randn(3, 4), b.randn(3, 4))
    assert not torch.equal(make(1).randn(3, 4), c.randn(3, 4))
    assert derive_seed(1, "x") != derive_seed(1, "y")
    with pytest.raises(CheckFailure) as info:
        a.compare_direct("v", torch.ones(2), torch.zeros(2, dtype=torch.float64))
    assert info.value.kind is FailureKind.NUMERIC and info.value.measured == 1.0


def test_reports_json_junit_markdown_and_partial_stream(tmp_path):
    paths = ReportPaths(json=tmp_path / "r.json", junit=tmp_path / "r.xml", markdown=tmp_path / "r.md")
    progress = io.StringIO()
    report = audit(
        fakes.GoodAdapter(),
        fakes.RaisingAdapter(),
        report_paths=paths,
        progress=progress,
        save_inputs=tmp_path / "inputs",
    )
    data = json.loads(paths.json.read_text())
    assert data["exit_code"] == 1
    assert data["matrix"]["attention.formula"] == {"fake-good": "pass", "fake-raising": "fail"}
    for t in data["targets"]:
        assert t["total_time_s"] >= t["target_time_s"] >= 0 and t["harness_time_s"] >= 0
    stream = [json.loads(line) for line in (tmp_path / "r.partial.jsonl").read_text().splitlines()]
    assert stream[0]["event"] == "start" and stream[-1]["event"] == "end"
    assert sum(e["event"] == "result" for e in stream) == len(report.results) == 6
    suites = ET.parse(paths.junit).getroot().findall("testsuite")
    assert [(s.get("name"), s.get("failures"), s.get("skipped")) for s in suites] == [
        ("fake-good", "0", "1"),
        ("fake-raising", "1", "2"),
    ]
    md = paths.markdown.read_text()
    assert (
        "| `attention.formula` | pass | **FAIL** |" in md
        and f"repro: {python_command()} -m transformer_conformance run" in md
    )
    assert progress.getvalue().count("\n") == 6 and "fake-raising :: dummy.attention ... fail [raised]" in (
        progress.getvalue()
    )
    # the raising target recorded its inputs before failing; they were saved with torch.save
    saved = torch.load(result(report, "fake-raising", "dummy.attention").saved_inputs)
    assert saved["inputs"]["q"].shape == (1, 2, 3, 4) and saved["seed"] == report.config["seed"]
    text = report.summary_text()
    assert "claim attention.formula" in text and "target" in text and "harness" in text


def test_ci_profile_is_derandomized_and_others_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    # the suite pins every profile's seed under CI (tests/conftest.py); this test is about the default
    monkeypatch.delenv(SEED_ENV, raising=False)
    assert audit(fakes.GoodAdapter()).config["seed"] == audit(fakes.GoodAdapter()).config["seed"]
    seeds = {audit(fakes.GoodAdapter(), profile="quick").config["seed"] for _ in range(3)}
    assert len(seeds) > 1


def test_usage_errors():
    with pytest.raises(UsageError, match="unknown target"):
        run_audit(["no-such-target"], registry=fakes.REGISTRY)
    with pytest.raises(UsageError, match="dtype"):
        audit(fakes.GoodAdapter(), dtype="int8")
    with pytest.raises(UsageError, match="profile"):
        audit(fakes.GoodAdapter(), profile="slow")
    with pytest.raises(UsageError, match="Adapter"):
        run_audit(["tests.conformance.fakes:make_not_an_adapter"], registry=fakes.REGISTRY)
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            audit(fakes.GoodAdapter(), device="cuda")


def fake_result(target, check, claims, status):
    return CheckResult(target=target, check=check, claims=list(claims), status=status)


def fake_report(results, targets=("t",), claim_filter=()):
    summaries = [TargetSummary(name=t, impl=t, capabilities=[], conventions={}, gated=True) for t in targets]
    return AuditReport(config={}, targets=summaries, results=results, claim_filter=list(claim_filter))


@pytest.mark.parametrize(
    ("statuses", "cell"),
    [
        (["pass", "pass"], "pass"),
        (["pass", "not-applicable"], "pass"),  # n-a checks do not count against a claim
        (["not-applicable", "not-applicable"], "not-applicable"),
        (["pass", "blocked"], "blocked"),  # a check that could not run: never "pass"
        (["pass", "known-deviation"], "known-deviation"),
        (["pass", "blocked", "known-deviation"], "known-deviation"),
        (["pass", "known-deviation", "fail", "blocked"], "fail"),
        (["not-applicable", "fail"], "fail"),
        (["pass", "error"], "error"),
    ],
)
def test_matrix_cell_is_pass_only_when_every_applicable_check_passed(statuses, cell):
    results = [fake_result("t", f"c{i}", ["attention.formula"], s) for i, s in enumerate(statuses)]
    assert aggregate(statuses) == cell
    # a passing check listed first or last must not hide the others
    for ordered in (results, results[::-1]):
        claims, targets, cells = fake_report(ordered).matrix()
        assert (claims, targets, cells) == (["attention.formula"], ["t"], {("attention.formula", "t"): cell})


def test_matrix_text_fits_120_columns_with_many_long_target_names():
    targets = [f"torch-sdpa-backend-with-a-long-name-{i}" for i in range(13)]
    claims = ["mask.causal.future-blind", "kvcache.chunked-prefill-equals-token-by-token"]
    results = [fake_result(t, "c", claims, "pass" if i % 2 else "fail") for i, t in enumerate(targets)]
    report = fake_report(results, targets)
    text = report.matrix_text()
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "T1 = torch-sdpa-backend-with-a-long-name-0" in text and f"T13 = {targets[12]}" in text
    # every (claim, target) cell appears exactly once across the blocks of columns
    rows = [line.split() for line in text.splitlines() if line.startswith(tuple(claims))]
    assert sum(len(r) - 1 for r in rows) == len(claims) * len(targets)
    assert sum(r.count("FAIL") for r in rows) == 2 * 7
    # the Markdown report keeps the full target names (its tables scroll)
    assert "| claim | " + " | ".join(targets) + " |" in report.markdown()


def test_claims_pattern_limits_the_matrix_to_matching_claims():
    reg = Registry()
    reg.check("both", claims=("attention.weights.rows-sum-to-one", "attention.formula"), needs=(fakes.ATTN,))(
        fakes.dummy_rows
    )
    reg.check("formula-only", claims=("attention.formula",), needs=(fakes.ATTN,))(fakes.dummy_attention)
    report = audit(fakes.GoodAdapter(), registry=reg, claims="attention.weights.*")
    assert [r.check for r in report.results] == ["both"]
    assert report.matrix()[0] == ["attention.weights.rows-sum-to-one"]
    assert list(report.to_json()["matrix"]) == ["attention.weights.rows-sum-to-one"]
    assert "attention.formula" not in report.matrix_text()
    # without --claims, every claim the checks credit is a row
    assert audit(fakes.GoodAdapter(), registry=reg).matrix()[0] == [
        "attention.formula",
        "attention.weights.rows-sum-to-one",
    ]
