"""Targets run in their own worker processes: no target can crash, hang, fool or outlive the audit.

Each hostile fake (tests/conformance/hostile.py) is audited before a correct target in the same run:
its verdict is a failure of its own kind, the correct target still passes, the exit code is 1, and
every report is complete at the requested path.
"""

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from transformer_conformance.api import ReportPaths, UsageError, run_audit
from transformer_conformance.cli import main

from . import fakes, hostile

#: Short, but long enough for the correct target's checks on a loaded machine.
TIMEOUT_S = 2.0

CASES = [
    (hostile.ExitZero(), "exited", "exited with code 0"),
    (hostile.ExitThree(), "exited", "exited with code 3"),
    (hostile.Segfault(), "crashed", "SIGSEGV"),
    (hostile.RaisesSystemExit(), "exited", "SystemExit(0)"),
    (hostile.RaisesKeyboardInterrupt(), "exited", "KeyboardInterrupt"),
    (hostile.PythonHang(), "timeout", "time limit"),
    (hostile.GilHoldingHang(), "timeout", "time limit"),
    (hostile.PatchesTheOracle(), "numeric", "output"),
    (hostile.MutatesInput(), "mutated-input", "input tensor #1"),
    (hostile.ReturnsSubclass(), "not-plain-tensor", "Sneaky"),
    (hostile.ReturnsMeta(), "not-plain-tensor", "meta tensor"),
]


def reports(tmp_path):
    return ReportPaths(json=tmp_path / "r.json", junit=tmp_path / "r.xml", markdown=tmp_path / "r.md")


def assert_reports_complete(tmp_path, n_results):
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["exit_code"] == 1 and len(data["results"]) == n_results
    assert ET.parse(tmp_path / "r.xml").getroot().tag == "testsuites"
    assert "# Conformance report" in (tmp_path / "r.md").read_text()
    stream = [json.loads(line) for line in (tmp_path / "r.partial.jsonl").read_text().splitlines()]
    assert stream[0]["event"] == "start" and stream[-1] == {**stream[-1], "event": "end", "exit_code": 1}
    assert sum(e["event"] == "result" for e in stream) == n_results


def by_target(report, target):
    return {r.check: r for r in report.results if r.target == target}


@pytest.mark.parametrize(("adapter", "kind", "text"), CASES, ids=[c[0].name for c in CASES])
def test_hostile_target_fails_with_its_kind_and_the_next_target_passes(tmp_path, adapter, kind, text):
    start = time.monotonic()
    report = run_audit(
        [adapter, fakes.GoodAdapter()],
        registry=fakes.REGISTRY,
        timeout=TIMEOUT_S,
        report_paths=reports(tmp_path),
        progress=False,
    )
    bad = by_target(report, adapter.name)["dummy.attention"]
    assert (bad.status, bad.failure_kind) == ("fail", kind), bad.message
    assert text in bad.message
    good = by_target(report, "fake-good")
    assert good["dummy.attention"].status == "pass" and good["dummy.rows"].status == "pass"
    assert report.exit_code == 1
    assert_reports_complete(tmp_path, 6)
    if kind == "timeout":  # stopped at the limit, GIL held or not; not left running
        assert bad.duration_s < TIMEOUT_S + 3
    assert time.monotonic() - start < 60


def test_the_worker_is_fresh_after_a_fatal_failure():
    """After a crash every check gets a fresh worker: a target that always crashes fails each check as
    crashed, and one that exits on its third call works again on the fourth check."""
    report = run_audit([hostile.Segfault()], registry=fakes.CRASH_REGISTRY, progress=False)
    assert [r.failure_kind for r in report.results] == ["crashed"] * 4  # the target crashes every time
    crashing = run_audit([fakes.CrashingAdapter()], registry=fakes.CRASH_REGISTRY, progress=False)
    assert [r.status for r in crashing.results] == ["pass", "pass", "fail", "pass"]


def test_huge_allocation_under_the_memory_limit(tmp_path):
    report = run_audit(
        [hostile.HugeAllocation(), fakes.GoodAdapter()],
        registry=fakes.REGISTRY,
        memory_limit_mib=512,
        report_paths=reports(tmp_path),
        progress=False,
    )
    bad = by_target(report, "hostile-huge-allocation")["dummy.attention"]
    assert (bad.status, bad.failure_kind) == ("fail", "memory-limit"), bad.message
    assert "512 MiB" in bad.message
    assert by_target(report, "fake-good")["dummy.attention"].status == "pass"
    assert_reports_complete(tmp_path, 6)


def test_factory_that_exits_fails_every_check_and_the_run_goes_on(tmp_path):
    report = run_audit(
        ["tests.conformance.hostile:make_factory_exit", fakes.GoodAdapter()],
        registry=fakes.REGISTRY,
        report_paths=reports(tmp_path),
        progress=False,
    )
    bad = by_target(report, "tests.conformance.hostile:make_factory_exit")
    assert {(r.status, r.failure_kind) for r in bad.values()} == {("fail", "exited")}
    assert "could not be built" in bad["dummy.attention"].message
    assert by_target(report, "fake-good")["dummy.attention"].status == "pass"
    assert_reports_complete(tmp_path, 6)


def run_cli(args, cwd, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "transformer_conformance", "run", *args],
        cwd=cwd,
        env={**__import__("os").environ, "PYTHONPATH": str(fakes.__file__).rsplit("/tests/", 1)[0]},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_cli_exit_zero_target_cannot_make_the_gate_green(tmp_path):
    proc = run_cli(
        [
            "--impl",
            "tests.conformance.hostile:make_exit_zero,tests.conformance.fakes:make_good",
            "--checks-from",
            "tests.conformance.fakes:REGISTRY",
            "--json",
            "r.json",
            "--junit",
            "r.xml",
            "--markdown",
            "r.md",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert_reports_complete(tmp_path, 6)


def test_cli_threads_left_behind_and_chdir_change_nothing(tmp_path):
    """A target leaving a non-daemon thread cannot keep the audit alive, and one that changes
    directory cannot move the reports (relative paths are resolved before any target runs)."""
    proc = run_cli(
        [
            "--impl",
            "tests.conformance.hostile:make_non_daemon_thread,tests.conformance.hostile:make_chdir,"
            "tests.conformance.fakes:make_nan",
            "--checks-from",
            "tests.conformance.fakes:REGISTRY",
            "--json",
            "out/r.json",
            "--junit",
            "out/r.xml",
            "--markdown",
            "out/r.md",
        ],
        cwd=tmp_path,
        timeout=120,  # (a leftover thread would keep the process alive until this kills it)
    )
    assert proc.returncode == 1, proc.stderr  # fake-nan fails; the two hostile targets are correct
    data = json.loads((tmp_path / "out" / "r.json").read_text())
    statuses = {(r["target"], r["check"]): r["status"] for r in data["results"]}
    assert statuses[("hostile-non-daemon-thread", "dummy.attention")] == "pass"
    assert statuses[("hostile-chdir", "dummy.attention")] == "pass"
    assert statuses[("fake-nan", "dummy.attention")] == "fail"
    assert_reports_complete(tmp_path / "out", 9)


def test_in_process_mode_is_not_isolated():
    """--in-process is for debugging: the same oracle patch fools the audit there (hence unsafe)."""
    original = (fakes.softmax_attention,)
    from transformer_conformance.reference import tolerance

    saved = (tolerance.differential, tolerance.direct)
    try:
        report = run_audit(
            [hostile.PatchesTheOracle()], registry=fakes.REGISTRY, progress=False, in_process=True
        )
        assert by_target(report, "hostile-patches-oracle")["dummy.attention"].status == "pass"
    finally:
        fakes.softmax_attention = original[0]
        tolerance.differential, tolerance.direct = saved


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_bad_timeout_is_a_usage_error_before_any_check(value, capsys):
    assert main(["run", "--impl", "tests.conformance.fakes:make_good", "--timeout", value]) == 2
    assert "--timeout" in capsys.readouterr().err
    with pytest.raises(UsageError, match="--timeout"):
        run_audit([fakes.GoodAdapter()], registry=fakes.REGISTRY, timeout=float(value))


def test_unwritable_report_path_is_a_usage_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(
        ["run", "--impl", "reference", "--check", "attention.shapes", "--json", str(blocker / "r.json")]
    )
    assert code == 2 and "not writable" in capsys.readouterr().err


def test_target_with_no_applicable_check_fails_the_gate_unless_allowed():
    report = run_audit([fakes.Float64OnlyAdapter()], registry=fakes.REGISTRY, dtype="float32", progress=False)
    assert report.empty == ["fake-f64-only"] and report.exit_code == 1
    assert "EMPTY target fake-f64-only" in report.summary_text()
    assert report.to_json()["empty_targets"] == ["fake-f64-only"]
    allowed = run_audit(
        [fakes.Float64OnlyAdapter()],
        registry=fakes.REGISTRY,
        dtype="float32",
        progress=False,
        allow_empty=True,
    )
    assert allowed.exit_code == 0 and allowed.empty == ["fake-f64-only"]


def test_deviation_file_follows_the_command_line_name(tmp_path):
    """An adapter that calls itself 'torch-mha' does not borrow the built-in torch-mha deviations."""
    report = run_audit(
        ["tests.conformance.fakes:make_posing_as_torch_mha"], registry=fakes.REGISTRY, progress=False
    )
    assert report.targets[0].name == "torch-mha"
    assert any("deviation file" in p for p in report.targets[0].problems)
    assert report.stale == []  # the built-in entries were not loaded, so none is stale either
