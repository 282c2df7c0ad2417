"""The command line: exit codes 0 / 1 / 2, report files, and a report that survives a crash."""

import io
import json
import shlex
import subprocess
import sys

import pytest
import torch

from transformer_conformance.cli import main
from transformer_conformance.runner import python_command
from transformer_conformance.targets import BUILTIN_TARGETS

from . import fakes
from .conftest import ROOT


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
        f"repro: {python_command()} -m transformer_conformance run --impl tests.conformance.fakes:make_nan "
        "--check dummy.attention --seed 5 --device cpu --dtype float32 --profile ci "
        "--checks-from tests.conformance.fakes:REGISTRY"
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
    proc = run_python("-m", "transformer_conformance", "run", "--impl", "does-not-exist")
    assert proc.returncode == 2 and "unknown target 'does-not-exist'" in proc.stderr


def test_list_shows_targets_claims_and_checks(capsys):
    assert main(["list"], registry=fakes.REGISTRY) == 0
    out = capsys.readouterr().out
    assert "reference" in out and "dummy.rows [structural] needs=attention depends_on=dummy.attention" in out
    assert "attention.weights.rows-sum-to-one" in out
    # the targets' second column starts at the same offset for every name, however long
    lines = out.split("Targets:\n")[1].split("\n\n")[0].splitlines()
    plain = {n: f for n, f in BUILTIN_TARGETS.items() if not n.startswith("mutant.")}
    mutants = len(BUILTIN_TARGETS) - len(plain)
    assert mutants > 0 and lines[-1] == f"  ({mutants} more hidden: --mutants lists the planted-bug mutants)"
    lines = lines[:-1]
    assert len(lines) == len(plain)
    offsets = {line.index(str(factory), len(name) + 2) for (name, factory), line in zip(plain.items(), lines)}
    assert len(offsets) == 1 and offsets.pop() > 2 + max(map(len, plain))


def test_list_shows_mutants_only_when_asked_and_filters_by_capability(capsys):
    assert main(["list", "--mutants"], registry=fakes.REGISTRY) == 0
    out = capsys.readouterr().out
    assert "mutant.attention-scale-by-dk" in out and "more hidden" not in out
    assert main(["list", "--capability", "layer_norm"], registry=fakes.REGISTRY) == 0
    out = capsys.readouterr().out
    checks = out.split("Checks:\n")[1]
    assert "dummy.layernorm" in checks and "dummy.attention" not in checks
    targets = out.split("Targets:\n")[1].split("\n\n")[0]
    assert "torch-layernorm" in targets and "torch-mha" not in targets and "mutant." not in targets
    assert main(["list", "--capability", "nope"], registry=fakes.REGISTRY) == 2
    assert "--capability: expected one of attention" in capsys.readouterr().err


def test_run_ends_with_where_the_reports_are_and_what_to_do_next(tmp_path, capsys):
    md = tmp_path / "r.md"
    argv = ["run", "--impl", "tests.conformance.fakes:make_nan", "--markdown", str(md), "--json",
            str(tmp_path / "r.json")]  # fmt: skip
    assert main(argv, registry=fakes.REGISTRY) == 1
    tail = capsys.readouterr().out.rstrip().splitlines()[-3:]
    assert tail[0].startswith(f"Reports: JSON {tmp_path / 'r.json'}, Markdown {md}")
    assert "r.partial.jsonl" in tail[0]
    assert tail[1].startswith("Next: rerun a failure with the `repro:` command")
    assert tail[2].startswith(f"Read {md} for the matrix")
    assert main(["run", "--impl", "tests.conformance.fakes:make_good"], registry=fakes.REGISTRY) == 0
    out = capsys.readouterr().out
    assert "Reports: none written (add --json, --junit, --markdown or --html FILE)" in out
    assert "Next: nothing fails" in out


def test_a_target_where_nothing_applies_says_why_in_the_console(capsys):
    argv = ["run", "--impl", "tests.conformance.fakes:make_good", "--check", "dummy.layernorm"]
    assert main(argv, registry=fakes.REGISTRY) == 1  # an EMPTY gated target fails the gate ...
    assert "EMPTY target fake-good" in capsys.readouterr().out
    assert main([*argv, "--allow-empty"], registry=fakes.REGISTRY) == 0  # ... unless allowed
    out = capsys.readouterr().out
    assert "nothing was audited: all 1 checks are not applicable (declared capabilities: attention)" in out
    assert "1 x target does not declare capability layer_norm" in out


def test_progress_is_one_line_per_target_off_a_terminal_and_a_bar_on_one(capsys, monkeypatch):
    argv = ["run", "--impl", "tests.conformance.fakes:make_good,tests.conformance.fakes:make_nan", "-q"]
    assert main(argv, registry=fakes.REGISTRY) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith("[1/2 targets, 3/6 checks] fake-good: 2 pass, 1 not-applicable (")
    assert err[1].startswith("[2/2 targets, 6/6 checks] fake-nan: 1 fail, 1 blocked, 1 not-applicable (")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(argv, registry=fakes.REGISTRY) == 1
    bar = terminal.getvalue()
    assert "6/6" in bar and "check" in bar and "<" in bar  # tqdm: counts, unit, elapsed<remaining
    assert "targets," not in bar
    assert main([*argv, "--no-progress"], registry=fakes.REGISTRY) == 1
    assert terminal.getvalue() == bar


def test_checks_from_replaces_the_builtin_checks_and_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "REPLACE the built-in ones" in " ".join(capsys.readouterr().out.split())
    argv = ["run", "--impl", "reference", "--checks-from", "tests.conformance.fakes:REGISTRY"]
    argv += ["--json", str(tmp_path / "r.json")]
    assert main(argv) == 0
    ran = {r["check"] for r in json.loads((tmp_path / "r.json").read_text())["results"]}
    assert ran == {"dummy.attention", "dummy.rows", "dummy.layernorm"}


class ScaledAdapter(fakes.GoodAdapter):
    """Output off by 1 %: a NUMERIC failure whose measured error depends on the drawn inputs."""

    name = "fake-scaled"

    def attention(self, q, k, v, *, mask, is_causal):
        out, weights = fakes.softmax_attention(q, k, v)
        return out * 1.01, weights


def make_scaled():
    return ScaledAdapter()


def test_printed_repro_command_reruns_exactly_that_failing_case(tmp_path, run_python):
    devs = tmp_path / "devs"
    devs.mkdir()
    first = tmp_path / "first.json"
    proc = run_python(
        "-m", "transformer_conformance", "run", "--impl", "tests.conformance.test_cli:make_scaled",
        "--checks-from", "tests.conformance.fakes:REGISTRY", "--seed", "11", "--profile", "quick",
        "--timeout", "30", "--deviations", str(devs), "--json", str(first),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    failing = [r for r in json.loads(first.read_text())["results"] if r["status"] == "fail"]
    assert [r["check"] for r in failing] == ["dummy.attention"]
    case = failing[0]
    assert case["failure_kind"] == "numeric" and case["measured"] > case["allowed"]
    repro = case["repro"]
    assert f"repro: {repro}" in proc.stdout
    for option in ("--checks-from tests.conformance.fakes:REGISTRY", "--seed 11", "--profile quick",
                   "--timeout 30", f"--deviations {devs}"):  # fmt: skip
        assert option in repro
    argv = shlex.split(repro)
    assert argv[0] == python_command(ROOT) and argv[0] != "python"
    again = tmp_path / "again.json"
    # executed as printed, from the project root (``-m`` puts the cwd on sys.path)
    rerun = subprocess.run(
        [*argv, "--json", str(again)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert rerun.returncode == 1, rerun.stderr
    (same,) = json.loads(again.read_text())["results"]
    assert (same["check"], same["status"], same["measured"]) == ("dummy.attention", "fail", case["measured"])
    # the seed matters: another seed measures another error, so the match above is not by chance
    other = tmp_path / "other.json"
    seed_at = argv.index("--seed") + 1
    run_python(*argv[1:seed_at], "12", *argv[seed_at + 1 :], "--json", str(other))
    assert json.loads(other.read_text())["results"][0]["measured"] != case["measured"]


def test_partial_report_survives_a_crash_mid_run(tmp_path, run_python):
    report = tmp_path / "r.json"
    proc = run_python(
        "-m",
        "transformer_conformance",
        "run",
        "--impl",
        "tests.conformance.fakes:make_crashing",
        "--checks-from",
        "tests.conformance.fakes:CRASH_REGISTRY",
        "--json",
        str(report),
        "--in-process",
    )
    assert proc.returncode == 3  # in-process, the target killed the audit on its third call
    assert not report.exists()
    lines = [json.loads(line) for line in (tmp_path / "r.partial.jsonl").read_text().splitlines()]
    assert [e["event"] for e in lines] == ["start", "result", "result"]
    assert [e["check"] for e in lines[1:]] == ["dummy.crash-0", "dummy.crash-1"]
    assert all(e["status"] == "pass" for e in lines[1:])


def test_isolated_target_that_exits_mid_run_is_a_failed_check(tmp_path, run_python):
    report = tmp_path / "r.json"
    proc = run_python(
        "-m",
        "transformer_conformance",
        "run",
        "--impl",
        "tests.conformance.fakes:make_crashing",
        "--checks-from",
        "tests.conformance.fakes:CRASH_REGISTRY",
        "--json",
        str(report),
    )
    assert proc.returncode == 1, proc.stderr  # a failed check, not the target's exit code
    data = json.loads(report.read_text())
    statuses = [(r["check"], r["status"], r["failure_kind"]) for r in data["results"]]
    # the third call exits the worker; the fourth check gets a fresh worker (its first call)
    assert statuses == [
        ("dummy.crash-0", "pass", None),
        ("dummy.crash-1", "pass", None),
        ("dummy.crash-2", "fail", "exited"),
        ("dummy.crash-3", "pass", None),
    ]
    assert "exited with code 3" in data["results"][2]["message"]
    lines = [json.loads(line) for line in (tmp_path / "r.partial.jsonl").read_text().splitlines()]
    assert lines[-1]["event"] == "end" and lines[-1]["exit_code"] == 1


def test_threads_option_sets_torch_threads_and_rejects_negative(capsys):
    cli_main = main
    before = torch.get_num_threads()
    try:
        code = cli_main(["run", "--impl", "reference", "--check", "attention.shapes", "--threads", "1", "-q"])
        assert code == 0 and torch.get_num_threads() == 1
        assert cli_main(["run", "--impl", "reference", "--threads", "-1"]) == 2
        assert "--threads" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
