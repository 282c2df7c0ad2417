"""Audit cost: wall time of ``run_audit(["reference"])`` per profile and the share spent inside the target.

Claims: none (a cost figure for the conformance suite itself).

Each profile (quick, ci, thorough) is run once on the chosen device in float32; the figures are the
wall time of the call and, from the report's own time accounting, the share of check time spent inside
the target (every call into a target goes through ``CheckContext.call``, which the runner sums as
``target_time_s``; the rest is harness time: drawing inputs, the float64 oracle, comparisons). The share
of the call's wall time is shown too (wall time also covers loading the checks, resolving the target and
building the report; no report files are written). ``--skip-thorough`` and ``--quick`` leave out the
thorough profile.
"""

import time

from benchmarks._timing import Row, Settings

NAME = "audit-cost"
SHARE_TARGET = 0.5


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
    return rows
