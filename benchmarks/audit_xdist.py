"""Audit inside pytest on 1 vs 2 xdist workers: wall time of ``pytest --conformance-impl T1,T2,...``.

Claims: none (a cost figure for the conformance suite's pytest plugin).

Each (target, check) is a pytest item that does its own work, so pytest-xdist splits the audit. A target's
items stay on one worker (``--dist loadscope``, which the plugin picks for ``-n N``: dependencies and the
deviation judgement need the target's earlier results), so the unit of parallelism is the target: the
figure audits four built-in targets of similar cost. Both runs are fresh
``python -m pytest`` processes in an empty directory, one after the other, with the same options (the
same seed: the same checks on the same inputs); the
figures are their wall times (interpreter start, torch import and worker start-up included) and the ratio.
Item outcomes must agree between the two runs (the ``outcomes`` note). The fixed cost of each run (the
same command with every item deselected: start-up, torch import, worker start and collection) is measured
too, and the speed-up of what remains: on a short audit the fixed cost dominates. Speed-up is bounded by
the cores free on the machine; on a shared 2-core box expect well under 2x. ``--tiny`` (the smoke test)
runs the 1-worker figure only, on a few items.
"""

import re
import subprocess
import sys
import tempfile
import time

from benchmarks._timing import Row, Settings

NAME = "audit-xdist"


def _pytest(workers: int, extra: list[str], cwd: str) -> tuple[float, str]:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers), *extra]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=1800)
    wall = time.perf_counter() - start
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-200:]
    # xdist does not report deselected items in its summary line: compare the outcomes only
    found = re.findall(r"(\d+) (\w+)", last)
    counts = ", ".join(f"{n} {k}" for n, k in found if k not in ("in", "deselected"))
    return wall, counts


def run(settings: Settings) -> list[Row]:
    """Wall time of the same audit in pytest on 1 and 2 workers, and their ratio."""
    profile = "quick" if settings.mode != "full" else "ci"
    targets = "reference,torch-mha,torch-sdpa-math,torch-layernorm"
    extra = ["--conformance-impl", targets, "--conformance-profile", profile,
             "--conformance-device", str(settings.device), "--conformance-seed", str(settings.seed)]
    if settings.mode == "tiny":
        extra += ["-k", "attention.shapes"]
    rows: list[Row] = []
    scope = f"4 targets, profile={profile}" + (" (-k attention.shapes)" if settings.mode == "tiny" else "")
    with tempfile.TemporaryDirectory() as cwd:
        one, counts_one = _pytest(0, extra, cwd)
        rows.append(Row(NAME, scope, "wall time, 1 worker (-n 0)", one, "s", note=counts_one))
        if settings.mode == "tiny":  # the smoke test: starting two workers costs more than the figure says
            return rows
        two, counts_two = _pytest(2, extra, cwd)
        # the fixed cost: interpreter, torch, worker start-up and collection, with every item deselected
        fixed_one, _ = _pytest(0, [*extra, "-k", "no-such-item"], cwd)
        fixed_two, _ = _pytest(2, [*extra, "-k", "no-such-item"], cwd)
    rows.append(Row(NAME, scope, "wall time, 2 workers (-n 2)", two, "s", note=counts_two))
    rows.append(Row(NAME, scope, "speed-up 2 workers vs 1", one / two if two > 0 else 0.0, "x",
                    note="outcomes agree" if counts_one == counts_two else "OUTCOMES DIFFER"))
    rows.append(Row(NAME, scope, "fixed cost, 1 worker (no item run)", fixed_one, "s"))
    rows.append(Row(NAME, scope, "fixed cost, 2 workers (no item run)", fixed_two, "s"))
    run_one, run_two = one - fixed_one, two - fixed_two
    rows.append(Row(NAME, scope, "speed-up of the items' time (wall - fixed)",
                    run_one / run_two if run_two > 0 else 0.0, "x",
                    note=f"{run_one:.1f} s vs {run_two:.1f} s"))
    return rows
