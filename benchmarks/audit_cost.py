"""Audit cost: wall time of ``run_audit(["reference"])`` per profile and the share spent inside the target.

Claims: none (a cost figure for the conformance suite itself).

Each profile (quick, ci, thorough) is run once on the chosen device in float32; the figures are the
wall time of the call and, from the report's own time accounting, the share of check time spent inside
the target (every call into a target goes through ``CheckContext.call``, which the runner sums as
``target_time_s``; the rest is harness time: drawing inputs, the float64 oracle, comparisons). The share
of the call's wall time is shown too (wall time also covers loading the checks, resolving the target and
building the report; no report files are written). ``--skip-thorough`` and ``--quick`` leave out the
thorough profile.

The cost of isolation: the default target set of ``make conformance`` (ci profile) audited by the CLI
in-process (``--in-process``) and isolated (each target in its own worker process, the default), each
run a fresh interpreter as in CI, in interleaved rounds; the figure is the ratio of the median wall
times (budget: isolated within 1.5x of in-process), with a note saying whether both modes gave the
same verdict for every (target, check).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks._timing import Row, Settings

NAME = "audit-cost"
SHARE_TARGET = 0.5
ISOLATION_BUDGET = 1.5
#: The default target set of ``make conformance`` (the Makefile's TARGETS).
DEFAULT_TARGETS = (
    "reference,torch-sdpa-math,torch-sdpa-flash,torch-sdpa-efficient,torch-sdpa-cudnn,torch-mha,"
    "torch-layernorm,torch-encoder-layer,torch-encoder-layer-fastpath,torch-decoder-layer,"
    "torch-transformer,torch-transformer-fastpath,hf-gpt2"
)


def _cli_audit(targets: str, claims: str | None, device: str, in_process: bool, out: str) -> float:
    """Wall time of one ``python -m transformer_conformance run`` in a fresh interpreter (what a CI gate
    pays: interpreter, imports, every target, the reports)."""
    args = [sys.executable, "-m", "transformer_conformance", "run", "--impl", targets, "--device", device,
            "--profile", "ci", "--gate", "reference", "--json", out, "-q"]
    if claims:
        args += ["--claims", claims]
    if in_process:
        args.append("--in-process")
    start = time.perf_counter()
    subprocess.run(args, check=False, capture_output=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - start


def isolation_rows(settings: Settings) -> list[Row]:
    """In-process vs isolated audit of the default target set, each a fresh CLI process, interleaved;
    the wall-time ratio, and whether both modes reached the same verdict on every (target, check)."""
    targets = "reference" if settings.mode == "tiny" else DEFAULT_TARGETS
    claims = "attention.formula" if settings.mode == "tiny" else None
    rounds = settings.rounds(full=3, quick=1, tiny=1)
    times: dict[bool, list[float]] = {True: [], False: []}
    verdicts: dict[bool, dict[tuple[str, str], str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            for in_process in ((True, False) if i % 2 == 0 else (False, True)):
                out = os.path.join(tmp, f"{in_process}.json")
                times[in_process].append(_cli_audit(targets, claims, str(settings.device), in_process, out))
                with open(out, encoding="utf-8") as f:
                    results = json.load(f)["results"]
                verdicts[in_process] = {(r["target"], r["check"]): r["status"] for r in results}
    inproc, isolated = statistics.median(times[True]), statistics.median(times[False])
    ratio = isolated / inproc if inproc > 0 else 0.0
    same = verdicts[True] == verdicts[False]
    case = f"targets={'reference' if settings.mode == 'tiny' else 'default set'}"
    return [
        Row(NAME, case, "CLI wall time in-process", inproc, "s", note=f"median of {rounds} round(s)",
            extra={"rounds_s": times[True]}),
        Row(NAME, case, "CLI wall time isolated", isolated, "s", note="a worker process per target",
            extra={"rounds_s": times[False]}),
        Row(NAME, case, "isolated / in-process", ratio, "x", f"<= {ISOLATION_BUDGET:g}x",
            ratio <= ISOLATION_BUDGET,
            f"{len(verdicts[False])} results; same verdicts in both modes: {'yes' if same else 'NO'}"),
    ]

def run(settings: Settings) -> list[Row]:
    """One audit per profile; wall time, target share of check time and of wall time, result counts."""
    from transformer_conformance.api import run_audit

    if settings.mode == "tiny":
        profiles: tuple[str, ...] = ("quick",)
        claims: str | None = "attention.formula"
    else:
        skip = settings.skip_thorough or settings.mode == "quick"
        profiles = ("quick", "ci") if skip else ("quick", "ci", "thorough")
        claims = None
    rows: list[Row] = []
    for profile in profiles:
        start = time.perf_counter()
        report = run_audit(["reference"], device=settings.device, profile=profile, claims=claims,
                           progress=False)
        wall = time.perf_counter() - start
        summary = report.targets[0]
        counts = {k: v for k, v in summary.counts.items() if v}
        checks = sum(summary.counts.values())
        share = summary.target_time_s / summary.total_time_s if summary.total_time_s > 0 else 0.0
        share_wall = summary.target_time_s / wall if wall > 0 else 0.0
        has_target = profile == "ci"
        scope = f" (claims={claims} only)" if claims else ""
        rows.append(Row(NAME, f"profile={profile}", "wall time", wall, "s",
                        note=f"{checks} checks{scope}: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
                        extra={"counts": counts, "check_time_s": summary.total_time_s,
                               "target_time_s": summary.target_time_s}))
        rows.append(Row(NAME, f"profile={profile}", "target share of check time", share * 100, "%",
                        f">= {SHARE_TARGET:.0%}" if has_target else "",
                        share >= SHARE_TARGET if has_target else None,
                        f"target {summary.target_time_s:.2f} s of {summary.total_time_s:.2f} s in checks"))
        rows.append(Row(NAME, f"profile={profile}", "target share of wall time", share_wall * 100, "%"))
    return rows + isolation_rows(settings)
