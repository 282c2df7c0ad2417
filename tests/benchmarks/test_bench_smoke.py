"""Every benchmark runs once at toy sizes and yields well-formed rows; the helpers compute what they claim.

No timing is asserted anywhere: the figures depend on the machine. ``Row.problems`` is the well-formedness
check; the planted malformed rows below show it rejects what it should.
"""

import importlib
import json
import math
from pathlib import Path

import pytest
import torch

from benchmarks import BENCHMARKS
from benchmarks import __main__ as cli
from benchmarks._timing import Row, Settings, interleaved, linear_slope, loglog_slope, median
from benchmarks.kv_cache import _integrate


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_yields_well_formed_rows(name: str, device: torch.device) -> None:
    module = importlib.import_module(BENCHMARKS[name])
    rows = module.run(Settings(device=device, mode="tiny"))
    assert rows, f"{name} produced no rows"
    for row in rows:
        assert row.bench == module.NAME == name
        assert row.problems() == [], (row, row.problems())
    json.dumps([r.as_dict() for r in rows])  # serialisable
    assert module.__doc__ and "Claims:" in module.__doc__


def test_cli_writes_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = cli.main(["--tiny", "--device", "cpu", "--only", "attention", "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:4] == ["benchmark", "case", "figure", "value"]
    data = json.loads(out.read_text())
    assert data["mode"] == "tiny" and data["rows"] and "attention" in data["methods"]
    assert {r["bench"] for r in data["rows"]} == {"attention"}


def test_cli_rejects_unknown_benchmark() -> None:
    with pytest.raises(SystemExit, match="--only"):
        cli.main(["--tiny", "--only", "no-such-bench"])


# --- the well-formedness check has teeth: planted malformed rows -------------------------------------

GOOD = Row("b", "case", "metric", 1.0, "x", ">= 1x", True)


@pytest.mark.parametrize(
    "bad",
    [
        Row("b", "case", "metric", float("nan")),  # NaN figure
        Row("b", "case", "metric", math.inf),  # infinite figure
        Row("b", "", "metric", 1.0),  # empty case
        Row("b", "case", "metric", 1.0, target="<= 3x"),  # target without a verdict
        Row("b", "case", "metric", 1.0, meets=False),  # verdict without a target
    ],
)
def test_row_check_rejects_malformed_rows(bad: Row) -> None:
    assert GOOD.problems() == []
    assert bad.problems() != []


# --- helpers: expected values from closed forms, not from the code ------------------------------------


def test_integrate_is_exact_for_linear_per_step_cost() -> None:
    # per-step cost t(i) = 3 + 2 i, sampled at a few positions: sum_{i=1}^{n} t(i) = 3n + n(n+1).
    n = 40
    positions = [1, 7, 20, 40]
    assert _integrate(positions, [3 + 2 * p for p in positions], n) == pytest.approx(3 * n + n * (n + 1))


def test_integrate_mutant_counting_segment_ends_twice_is_rejected() -> None:
    def mutant(positions: list[int], per_step: list[float], n: int) -> float:
        total = 0.0
        for (p0, t0), (p1, t1) in zip(zip(positions, per_step), zip(positions[1:], per_step[1:])):
            for i in range(p0, p1 + 1):  # bug: p1 counted again by the next segment
                total += t0 + (t1 - t0) * (i - p0) / (p1 - p0)
        return total

    n, positions = 40, [1, 7, 20, 40]
    assert mutant(positions, [3 + 2 * p for p in positions], n) != pytest.approx(3 * n + n * (n + 1))


def test_growth_exponents_from_closed_forms() -> None:
    xs = [16.0, 64.0, 256.0, 1024.0]
    assert loglog_slope(xs, [5 * x**2 for x in xs]) == pytest.approx(2.0)
    assert loglog_slope(xs, [7.0 for _ in xs]) == pytest.approx(0.0)
    assert linear_slope(xs, [2 * x + 1 for x in xs]) == pytest.approx(2.0)
    assert median([3.0, 1.0, 2.0]) == 2.0


def test_interleaved_rotates_order_and_drops_warmup() -> None:
    calls: list[str] = []
    times = interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        torch.device("cpu"),
        rounds=3,
        warmup=1,
    )
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert [len(v) for v in times.values()] == [3, 3]


def test_calibration_runs_alone_and_reports_both_rates(tmp_path: Path) -> None:
    out = tmp_path / "calibration.json"
    code = cli.main(["calibration", "--tiny", "--seeds", "1", "--device", "cpu", "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["bench"] for r in rows} == {"calibration"}
    for profile in ("quick", "ci", "thorough"):
        cases = [r for r in rows if r["case"].endswith(f"profile={profile}")]
        assert {r["metric"] for r in cases} == {"false-alarm rate", "kill rate"}, profile


@pytest.mark.parametrize(("part", "metric"), [("false-alarms", "false-alarm rate"), ("kills", "kill rate")])
def test_calibration_runs_one_half(tmp_path: Path, part: str, metric: str) -> None:
    out = tmp_path / "calibration.json"
    args = ["calibration", "--tiny", "--seeds", "1", "--mutant-seeds", "1", "--part", part, "--device", "cpu"]
    assert cli.main([*args, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert rows and {r["metric"] for r in rows} == {metric}


def test_cli_rejects_a_non_positive_seed_count() -> None:
    with pytest.raises(SystemExit, match="--seeds"):
        cli.main(["calibration", "--tiny", "--seeds", "0"])
    with pytest.raises(SystemExit, match="--mutant-seeds"):
        cli.main(["calibration", "--tiny", "--mutant-seeds", "0"])
