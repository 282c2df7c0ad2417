"""The HTML report: one self-contained page (inline CSS, JS and pictures; no network) of an audit.

``render_html(report)`` fills ``templates/report.html.j2`` (jinja2) from the report's JSON form, the
claim spec (statement, status, note citation) and, when matplotlib is installed (the ``html``
extra), the pictures of ``conformance/figures.py``. Without matplotlib the page still has every
table and says that the figures need the extra.
"""

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from transformer_conformance import figures
from transformer_conformance.report import PRECEDENCE, SYMBOLS, AuditReport, counterexample_lines
from transformer_conformance.runner import (
    BLOCKED,
    ERROR,
    FAIL,
    KNOWN_DEVIATION,
    NOT_APPLICABLE,
    PASS,
)

#: Matrix legend and filter order (status, label shown).
LEGEND = (
    (PASS, "pass"),
    (FAIL, "FAIL"),
    (ERROR, "harness error"),
    (KNOWN_DEVIATION, "known deviation"),
    (BLOCKED, "blocked"),
    (NOT_APPLICABLE, "not applicable"),
)
FIGURES_NOTE = (
    "Figures need matplotlib: install the html extra (pip install 'transformer-conformance[html]') "
    "and rerun with --html."
)


def anchor(*parts: str) -> str:
    """An HTML id from ``parts`` (letters, digits, ``-_.`` kept; the rest becomes ``_``)."""
    return "--".join(re.sub(r"[^A-Za-z0-9_.-]", "_", p) for p in parts)


@dataclass
class ClaimInfo:
    """What the spec says about one claim."""

    id: str
    area: str
    title: str = ""
    statement: str = ""
    status: str = "unknown"
    citations: list[str] = field(default_factory=list)
    reason: str = ""
    condition: str = ""


def claim_infos(ids: list[str]) -> dict[str, ClaimInfo]:
    """Spec entries of ``ids`` (claims missing from the spec keep only their ID and area)."""
    out = {cid: ClaimInfo(cid, cid.split(".")[0]) for cid in ids}
    try:
        from transformer_conformance.spec import load_claims, load_notes

        claims, notes = load_claims(), load_notes()
    except Exception:  # the spec is optional for a report (e.g. an installed copy without it)
        return out
    for cid, info in out.items():
        claim = claims.get(cid)
        if claim is None:
            continue
        info.area, info.title, info.status = claim.area, claim.title, claim.status
        info.statement = claim.statement
        info.reason, info.condition = claim.reason or "", claim.condition or ""
        info.citations = [
            f"{notes[s.note].label if s.note in notes else '?'} {s.note}, {s.heading}" for s in claim.sources
        ] or ([f"{claim.origin} claim (not stated in the notes)"] if claim.origin != "notes" else [])
    return out


def _failure_view(r: dict[str, Any], draw: bool) -> dict[str, Any]:
    counterexample = {
        **({"minimal": r["counterexample"]} if r.get("counterexample") else {}),
        "inputs": r.get("inputs", {}),
        "seed": r.get("seed"),
        "device": r.get("device"),
        "dtype": r.get("dtype"),
        "profile": r.get("profile"),
    }
    return {
        **r,
        "anchor": anchor("f", r["target"], r["check"]),
        "result_anchor": anchor("r", r["target"], r["check"]),
        "counterexample": json.dumps(counterexample, indent=2, sort_keys=True, default=str),
        "figures": figures.failure_figures(r) if draw else [],
        "evidence_kinds": sorted((r.get("evidence") or {}).keys()),
        "counterexample_lines": counterexample_lines(r.get("counterexample")),
    }


def build_context(report: AuditReport) -> dict[str, Any]:
    """Everything the template shows, from the report's JSON form and the spec."""
    data = report.to_json()
    draw = figures.available()
    targets = [t["name"] for t in data["targets"]]
    results: list[dict[str, Any]] = data["results"]
    claims_in_matrix = list(data["matrix"])
    infos = claim_infos(claims_in_matrix)

    # Rows grouped by area (spec order of areas: first appearance), cells with their checks.
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        for claim in r["claims"]:
            by_cell.setdefault((claim, r["target"]), []).append(r)
    areas: dict[str, list[dict[str, Any]]] = {}
    for cid in claims_in_matrix:
        info = infos[cid]
        cells = []
        for t in targets:
            status = data["matrix"][cid].get(t)
            cells.append(
                {
                    "target": t,
                    "status": status or "none",
                    "symbol": SYMBOLS.get(status or "", "-"),
                    "href": "#" + anchor("ct", cid, t) if status else "",
                    "checks": [r["check"] for r in by_cell.get((cid, t), [])],
                }
            )
        areas.setdefault(info.area, []).append(
            {
                "info": info,
                "anchor": anchor("claim", cid),
                "cells": cells,
                "per_target": [
                    {
                        "target": t,
                        "anchor": anchor("ct", cid, t),
                        "status": data["matrix"][cid].get(t),
                        "checks": [
                            {
                                "check": r["check"],
                                "status": r["status"],
                                "message": r["message"],
                                "href": "#" + anchor("r", t, r["check"]),
                            }
                            for r in by_cell.get((cid, t), [])
                            if r["status"] != NOT_APPLICABLE
                        ],
                        "not_applicable": [
                            r["check"] for r in by_cell.get((cid, t), []) if r["status"] == NOT_APPLICABLE
                        ],
                    }
                    for t in targets
                    if by_cell.get((cid, t))
                ],
            }
        )

    failures = [_failure_view(r, draw) for r in results if r["status"] in (FAIL, ERROR)]
    failure_anchors = {(f["target"], f["check"]) for f in failures}
    deviations = [
        {**r, "result_anchor": anchor("r", r["target"], r["check"])}
        for r in results
        if r["status"] == KNOWN_DEVIATION
    ]
    target_views = []
    order = {status: i for i, status in enumerate(PRECEDENCE)}
    for t in data["targets"]:
        # failures first, not-applicable last (registration order within a status)
        mine = [r for r in results if r["target"] == t["name"]]
        mine.sort(key=lambda r: order.get(r["status"], 0))
        target_views.append(
            {
                **t,
                "anchor": anchor("target", t["name"]),
                "conventions_json": {k: json.dumps(v, default=str) for k, v in t["conventions"].items()},
                "deviations": [d for d in deviations if d["target"] == t["name"]],
                "stale": [s for s in data["stale_deviations"] if s["target"] == t["name"]],
                "results": [
                    {
                        **r,
                        "anchor": anchor("r", t["name"], r["check"]),
                        "failure_href": "#" + anchor("f", t["name"], r["check"])
                        if (t["name"], r["check"]) in failure_anchors
                        else "",
                    }
                    for r in mine
                ],
            }
        )
    timing = ""
    if draw and data["targets"]:
        timing = figures.timing_png(
            targets,
            [t["target_time_s"] for t in data["targets"]],
            [t["harness_time_s"] for t in data["targets"]],
        )
    totals = {s: sum(r["status"] == s for r in results) for s, _ in LEGEND}
    gated = [t["name"] for t in data["targets"] if t["gated"]]
    return {
        "gated": gated,
        "config": data["config"],
        "exit_code": data["exit_code"],
        "duration_s": data["duration_s"],
        "legend": LEGEND,
        "totals": totals,
        "targets": target_views,
        "target_names": targets,
        "areas": areas,
        "failures": failures,
        "deviations": deviations,
        "stale": data["stale_deviations"],
        "empty": [{"name": n, "verdict": report.empty_verdict(n)} for n in data["empty_targets"]],
        "figures_available": draw,
        "figures_note": FIGURES_NOTE,
        "timing_png": timing,
    }


def render_html(report: AuditReport) -> str:
    """The self-contained HTML page of ``report``."""
    import jinja2

    source = resources.files("transformer_conformance").joinpath("templates/report.html.j2")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    template = env.from_string(source.read_text(encoding="utf-8"))
    return template.render(**build_context(report))


def write_html(report: AuditReport, path: Path) -> None:
    """Write the HTML report to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
