"""The command line: exit codes 0 / 1 / 2, report files, and a report that survives a crash."""

import json

import pytest
import torch

from conformance.cli import main

from . import fakes

pytestmark = pytest.mark.claim("attention.formula")


def test_exit_0_when_everything_passes(tmp_path, capsys):
    code = main(
        [
            "run",
            "--impl",
            "tests.conformance.fakes:make_good",
            "--json",
            str(tmp_path / "r.json"),
            "--junit",
            str(tmp_path / "r.xml"),
            "--markdown",
            str(tmp_path / "r.md"),
        ],
        registry=fakes.REGISTRY,
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "attention.formula" in out and "exit code 0" in out
    assert (tmp_path / "r.xml").is_file() and (tmp_path / "r.md").is_file()
    assert json.loads((tmp_path / "r.json").read_text())["targets"][0]["impl"] == (
        "tests.conformance.fakes:make_good"
    )


def test_exit_1_on_failure_with_repro_and_gate(capsys):
    argv = ["run", "--impl", "tests.conformance.fakes:make_nan", "--seed", "5"]
    assert main(argv, registry=fakes.REGISTRY) == 1
    out = capsys.readouterr().out
    assert (
        "repro: python -m conformance run --impl tests.conformance.fakes:make_nan "
        "--check dummy.attention --seed 5 --device cpu --dtype float32"
    ) in out
    argv = [
        "run",
        "--impl",
        "tests.conformance.fakes:make_good,tests.conformance.fakes:make_nan",
        "--gate",
        "tests.conformance.fakes:make_good",
    ]
    assert main(argv, registry=fakes.REGISTRY) == 0


def test_exit_1_on_stale_deviation(tmp_path):
    (tmp_path / "fake-good.toml").write_text(
        '[[deviation]]\nclaim = "attention.formula"\ncategory = "bug"\nreason = "fixed long ago"\n'
    )
    argv = ["run", "--impl", "tests.conformance.fakes:make_good", "--deviations", str(tmp_path)]
    assert main(argv, registry=fakes.REGISTRY) == 1


def test_exit_2_usage_errors_in_process(capsys):
    assert main(["run", "--impl", "no-such-target"], registry=fakes.REGISTRY) == 2
    assert "unknown target 'no-such-target'" in capsys.readouterr().err
    assert (
        main(
            ["run", "--impl", "tests.conformance.fakes:make_good", "--check", "nope"], registry=fakes.REGISTRY
        )
        == 2
    )
    assert (
        main(
            ["run", "--impl", "tests.conformance.fakes:make_good", "--timeout", "-1"], registry=fakes.REGISTRY
        )
        == 2
    )
    if not torch.cuda.is_available():
        assert main(["run", "--impl", "reference", "--device", "cuda"], registry=fakes.REGISTRY) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["run", "--impl", "reference", "--dtype", "int8"])
    assert info.value.code == 2


def test_exit_2_from_python_dash_m(run_python):
    proc = run_python("-m", "conformance", "run", "--impl", "does-not-exist")
    assert proc.returncode == 2 and "unknown target 'does-not-exist'" in proc.stderr


def test_list_shows_targets_claims_and_checks(capsys):
    assert main(["list"], registry=fakes.REGISTRY) == 0
    out = capsys.readouterr().out
    assert "reference" in out and "dummy.rows [structural] needs=attention depends_on=dummy.attention" in out
    assert "attention.weights.rows-sum-to-one" in out


def test_partial_report_survives_a_crash_mid_run(tmp_path, run_python):
    report = tmp_path / "r.json"
    proc = run_python(
        "-m",
        "conformance",
        "run",
        "--impl",
        "tests.conformance.fakes:make_crashing",
        "--checks-from",
        "tests.conformance.fakes:CRASH_REGISTRY",
        "--json",
        str(report),
    )
    assert proc.returncode == 3  # the target killed the process on its third call
    assert not report.exists()
    lines = [json.loads(line) for line in (tmp_path / "r.partial.jsonl").read_text().splitlines()]
    assert [e["event"] for e in lines] == ["start", "result", "result"]
    assert [e["check"] for e in lines[1:]] == ["dummy.crash-0", "dummy.crash-1"]
    assert all(e["status"] == "pass" for e in lines[1:])
