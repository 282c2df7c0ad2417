"""The audit report: JSON, JUnit XML, Markdown, and the claims x targets matrix.

The same ``AuditReport`` feeds every format; the JSON form also carries the per-target split of
time spent inside the target (``ctx.call``) versus in the harness.
"""

import fnmatch
import importlib
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformer_conformance.runner import (
    BLOCKED,
    ERROR,
    FAIL,
    KNOWN_DEVIATION,
    NOT_APPLICABLE,
    PASS,
    STATUSES,
    CheckResult,
)

SYMBOLS = {
    PASS: "pass",
    FAIL: "FAIL",
    ERROR: "ERR",
    KNOWN_DEVIATION: "dev",
    NOT_APPLICABLE: "n-a",
    BLOCKED: "blocked",
}
# Aggregation order for a claim with several checks on one target: the first status present wins.
# FAIL if any check failed (ERR: a harness error), else dev if any was a known deviation, else
# blocked if any was blocked, else pass (every check that applied passed; not-applicable ones do
# not count), else n-a (none applied). A pass never hides a check that failed or could not run.
PRECEDENCE = (FAIL, ERROR, KNOWN_DEVIATION, BLOCKED, PASS, NOT_APPLICABLE)
#: Version of the JSON report's layout (``schema_version``); the JSON Schema ships beside the package.
SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "report.schema.json"
#: JUnit ``<skipped type=...>`` per status that is neither a pass nor a failure, so CI can tell a known
#: deviation (a recorded failure) from a check that does not apply to the target.
SKIPPED_TYPES = {KNOWN_DEVIATION: "known-deviation", NOT_APPLICABLE: "not-applicable", BLOCKED: "blocked"}
#: Width the plain-text matrix is laid out for (columns are split into blocks beyond it).
TEXT_WIDTH = 120


def aggregate(statuses: set[str] | list[str]) -> str:
    """The matrix cell for a claim whose checks on one target ended with ``statuses``."""
    present = set(statuses)
    return next(s for s in PRECEDENCE if s in present)


def counterexample_lines(counter: dict[str, Any] | None) -> list[str]:
    """The minimal counterexample of a failure (``conformance/search.py``), a few lines of text:
    sizes and where it came from, the recorded inputs' shapes, the offending entry, token ids, causality
    leaks."""
    if not counter:
        return []
    lines = []
    if "sizes" in counter or "example" in counter:
        known = counter.get("sizes") or {}
        sizes = " ".join(f"{k}={v}" for k, v in known.items())
        extra = {k: v for k, v in (counter.get("example") or {}).items() if k not in known}
        shrink = counter.get("shrink")
        shrunk = f", shrunk in {shrink['replays']} replays / {shrink['seconds']:g} s" if shrink else ""
        lines.append(
            f"minimal counterexample ({counter.get('source', '?')}{shrunk}): {sizes} "
            + json.dumps(extra, sort_keys=True)
        )
    shapes = counter.get("shapes")
    if shapes:
        lines.append("input shapes: " + ", ".join(f"{k} {v}" for k, v in shapes.items()))
    off = counter.get("offending")
    if off:
        where = off.get("at") or {"index": off.get("index")}
        at = ", ".join(f"{k} {v}" for k, v in where.items())
        lines.append(
            f"offending entry: {at}: target {off.get('target')}, oracle {off.get('oracle')}, "
            f"difference {off.get('difference')}"
        )
    for name, ids in (counter.get("token_ids") or {}).items():
        lines.append(f"token ids {name}: {ids}")
    causality = counter.get("causality")
    if causality and causality.get("leaks"):
        pairs = "; ".join(
            f"{causality.get('output', 'output')} {leak['output']} moved by {leak['change']} when "
            f"{causality.get('input', 'input')} {leak['input']} changed"
            for leak in causality["leaks"][:6]
        )
        lines.append(f"causality ({causality.get('count')} leak(s)): {pairs}")
    return lines


def claim_statements() -> dict[str, str]:
    """Claim ID -> statement, from ``spec.load_claims`` (empty when the spec is unavailable)."""
    try:
        load_claims = getattr(importlib.import_module("transformer_conformance.spec"), "load_claims", None)
    except ImportError:
        return {}
    if load_claims is None:
        return {}
    claims: Any = load_claims()
    items = claims.values() if isinstance(claims, dict) else claims
    out: dict[str, str] = {}
    for claim in items:
        if isinstance(claim, dict):
            cid, text = claim.get("id"), claim.get("statement") or claim.get("gist") or ""
        else:
            cid = getattr(claim, "id", None)
            text = getattr(claim, "statement", None) or getattr(claim, "gist", None) or ""
        if cid:
            out[str(cid)] = " ".join(str(text).split())
    return out


@dataclass
class TargetSummary:
    """Per-target metadata and totals."""

    name: str
    impl: str
    capabilities: list[str]
    conventions: dict[str, Any]
    gated: bool
    counts: dict[str, int] = field(default_factory=dict)
    total_time_s: float = 0.0
    target_time_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    source: str | None = None  # the adapter's source file (JUnit ``file`` of not-applicable cases)

    @property
    def harness_time_s(self) -> float:
        """Check time not spent inside the target."""
        return max(0.0, self.total_time_s - self.target_time_s)


@dataclass
class AuditReport:
    """Everything one audit produced."""

    config: dict[str, Any]
    targets: list[TargetSummary]
    results: list[CheckResult]
    stale: list[dict[str, Any]] = field(default_factory=list)
    statements: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    claim_filter: list[str] = field(default_factory=list)  # --claims patterns: matrix rows shown
    empty: list[str] = field(default_factory=list)  # targets on which no check applied
    allow_empty: bool = False  # --allow-empty: an empty target does not fail the gate

    def summarise(self) -> None:
        """Fill per-target counts and times from the results."""
        for target in self.targets:
            mine = [r for r in self.results if r.target == target.name]
            target.counts = {s: sum(r.status == s for r in mine) for s in STATUSES}
            target.total_time_s = sum(r.duration_s for r in mine)
            target.target_time_s = sum(r.target_time_s for r in mine)

    @property
    def failures(self) -> list[CheckResult]:
        """Results with status fail or error (all targets)."""
        return [r for r in self.results if r.status in (FAIL, ERROR)]

    def gated_names(self) -> set[str]:
        """The targets whose results decide the exit code (``--gate``)."""
        return {t.name for t in self.targets if t.gated}

    def gated_failures(self) -> list[CheckResult]:
        """Failures of the targets that decide the exit code."""
        gated = self.gated_names()
        return [r for r in self.failures if r.target in gated]

    def empty_verdict(self, name: str) -> str:
        """What an empty target means for the exit code, in the words every report uses."""
        if name not in self.gated_names():
            return "not gated"
        if self.allow_empty:
            return "allowed by --allow-empty"
        return "fails the gate; --allow-empty accepts it"

    def gated_empty(self) -> list[str]:
        """Gated targets on which no check applied (they fail the gate unless ``allow_empty``)."""
        gated = self.gated_names()
        return [] if self.allow_empty else [name for name in self.empty if name in gated]

    @property
    def exit_code(self) -> int:
        """0 when every gated check passed (or is a known deviation), no deviation entry is stale and
        every gated target had a check that applied (unless ``allow_empty``)."""
        return 1 if self.gated_failures() or self.stale or self.gated_empty() else 0

    # -- matrix --------------------------------------------------------------------------------
    def matrix(self) -> tuple[list[str], list[str], dict[tuple[str, str], str]]:
        """(claims, targets, cell status) aggregated over the checks of each claim (see
        ``PRECEDENCE``). With ``claim_filter`` (``--claims``), only the matching claims are rows,
        not the other claims the selected checks also credit."""
        targets = [t.name for t in self.targets]
        claims: list[str] = []
        per_cell: dict[tuple[str, str], set[str]] = {}
        for r in self.results:
            for claim in r.claims:
                if self.claim_filter and not any(fnmatch.fnmatchcase(claim, p) for p in self.claim_filter):
                    continue
                if claim not in claims:
                    claims.append(claim)
                per_cell.setdefault((claim, r.target), set()).add(r.status)
        claims.sort()
        cells = {key: aggregate(statuses) for key, statuses in per_cell.items()}
        return claims, targets, cells

    def matrix_text(self, width: int = TEXT_WIDTH) -> str:
        """The claims x targets matrix as plain text that fits ``width`` columns: targets are
        headed T1..Tn (a legend names them), cells are fixed-width, and when the columns do not
        fit beside the claim IDs they are split into several blocks."""
        claims, targets, cells = self.matrix()
        if not claims:
            return "(no checks ran)"
        labels = [f"T{i}" for i in range(1, len(targets) + 1)]
        cell = max(max(len(s) for s in SYMBOLS.values()), max(len(label) for label in labels))
        claim_w = max(len(c) for c in claims)
        per_block = max(1, (width - claim_w - 1) // (cell + 1))
        lines = [""]
        for label, target in zip(labels, targets):  # the legend, wrapped between entries
            entry = f"{label} = {target}"
            if lines[-1] and len(lines[-1]) + 2 + len(entry) > width:
                lines[-1] += ","
                lines.append("")
            lines[-1] += (", " if lines[-1] else "") + entry
        for start in range(0, len(targets), per_block):
            block = range(start, min(start + per_block, len(targets)))
            lines.append("")
            lines.append(" " * claim_w + "".join(" " + labels[i].ljust(cell) for i in block).rstrip())
            for claim in claims:
                row = "".join(
                    " " + SYMBOLS.get(cells.get((claim, targets[i]), ""), "-").ljust(cell) for i in block
                )
                lines.append((claim.ljust(claim_w) + row).rstrip())
        return "\n".join(lines)

    # -- text ----------------------------------------------------------------------------------
    def failure_text(self, r: CheckResult) -> str:
        """A multi-line description of one failure, with claims, inputs, errors and the repro."""
        lines = [f"{r.status.upper()} {r.target} :: {r.check} [{r.failure_kind or r.status}]"]
        for claim in r.claims:
            statement = self.statements.get(claim, "")
            lines.append(f"  claim {claim}" + (f": {statement}" if statement else ""))
        lines.append(f"  {r.message}")
        if r.failure_kind == "timeout" and r.allowed is not None:
            lines.append(f"  timed out after {float(r.allowed)} s")
        elif r.measured is not None and r.allowed is not None:
            lines.append(f"  measured {r.measured!r}, allowed {r.allowed!r}")
        elif r.measured is not None:
            lines.append(f"  measured {r.measured!r}")
        elif r.allowed is not None:
            lines.append(f"  allowed {r.allowed!r}")
        inputs = json.dumps(r.inputs, sort_keys=True, default=str)
        lines.append(f"  inputs: {inputs} (seed {r.seed}, {r.device}, {r.dtype})")
        lines += ["  " + line for line in counterexample_lines(r.counterexample)]
        if r.saved_inputs:
            lines.append(f"  saved inputs: {r.saved_inputs}")
        if r.traceback:
            lines.append("  " + r.traceback.rstrip().replace("\n", "\n  "))
        if r.warnings:
            lines.append(f"  the target warned ({len(r.warnings)}): " + "; ".join(r.warnings[:3]))
        if r.repro:
            lines.append(f"  repro: {r.repro}")
        return "\n".join(lines)

    def nothing_applied_text(self, t: TargetSummary) -> str:
        """Why a target none of whose checks applied was not audited (empty otherwise): the distinct
        not-applicable reasons, its declared capabilities and any declaration problems."""
        mine = [r for r in self.results if r.target == t.name]
        if not mine or any(r.status != NOT_APPLICABLE for r in mine):
            return ""
        reasons: dict[str, int] = {}
        for r in mine:
            reasons[r.message] = reasons.get(r.message, 0) + 1
        lines = [
            f"\n  nothing was audited: all {len(mine)} checks are not applicable "
            f"(declared capabilities: {', '.join(t.capabilities) or 'none'})"
        ]
        for message, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
            lines.append(f"\n    {n} x {message}")
        lines += [f"\n  declaration problem: {p}" for p in t.problems]
        return "".join(lines)

    def summary_text(self) -> str:
        """Failures, stale deviations, the matrix and per-target totals (printed by the CLI)."""
        parts = [self.failure_text(r) for r in self.failures]
        for s in self.stale:
            parts.append(
                f"STALE deviation for {s['target']}: {s['entry']} [{s['source']} #{s['index']}]: {s['why']}"
            )
        for name in self.empty:
            parts.append(
                f"EMPTY target {name}: no check applied, nothing was verified ({self.empty_verdict(name)})"
            )
        parts.append(self.matrix_text())
        for t in self.targets:
            counts = ", ".join(f"{n} {s}" for s, n in t.counts.items() if n)
            parts.append(
                f"{t.name}{'' if t.gated else ' (not gated)'}: {counts or 'no checks'}; "
                f"time {t.total_time_s:.2f}s (target {t.target_time_s:.2f}s, harness "
                f"{t.harness_time_s:.2f}s)" + self.nothing_applied_text(t)
            )
        parts.append(
            f"exit code {self.exit_code} ({len(self.gated_failures())} gated failure(s), "
            f"{len(self.stale)} stale deviation(s), {len(self.gated_empty())} empty target(s)); "
            f"total {self.duration_s:.1f}s"
        )
        return "\n\n".join(parts[:-1]) + "\n" + parts[-1] if len(parts) > 1 else parts[0]

    # -- files ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The full report as a JSON-serialisable dict."""
        claims, targets, cells = self.matrix()
        return {
            "schema_version": SCHEMA_VERSION,
            "config": self.config,
            "exit_code": self.exit_code,
            "duration_s": self.duration_s,
            "targets": [
                {
                    "name": t.name,
                    "impl": t.impl,
                    "gated": t.gated,
                    "source": t.source,
                    "capabilities": t.capabilities,
                    "conventions": t.conventions,
                    "counts": t.counts,
                    "total_time_s": t.total_time_s,
                    "target_time_s": t.target_time_s,
                    "harness_time_s": t.harness_time_s,
                    "problems": t.problems,
                }
                for t in self.targets
            ],
            "results": [r.to_json() for r in self.results],
            "stale_deviations": self.stale,
            "empty_targets": self.empty,
            "matrix": {claim: {t: cells.get((claim, t)) for t in targets} for claim in claims},
        }

    def write_json(self, path: Path) -> None:
        """Write the JSON report."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n", encoding="utf-8")

    def write_junit(self, path: Path) -> None:
        """Write JUnit XML: a testsuite per target, a testcase per check. Results that are neither a
        pass nor a failure are ``<skipped>`` with a distinct ``type`` (``SKIPPED_TYPES``) and message,
        a ``status`` property, and a ``file`` attribute naming what decided them: the deviation file
        for a known deviation, the adapter's source (its declarations) for not-applicable."""
        root = ET.Element("testsuites", name="transformer-conformance")
        for t in self.targets:
            mine = [r for r in self.results if r.target == t.name]
            stale = [s for s in self.stale if s["target"] == t.name]
            is_empty = int(t.name in self.gated_empty())
            suite = ET.SubElement(
                root,
                "testsuite",
                name=t.name,
                tests=str(len(mine) + len(stale) + is_empty),
                failures=str(sum(r.status == FAIL for r in mine) + len(stale) + is_empty),
                errors=str(sum(r.status == ERROR for r in mine)),
                skipped=str(sum(r.status in (BLOCKED, NOT_APPLICABLE, KNOWN_DEVIATION) for r in mine)),
                time=f"{t.total_time_s:.3f}",
            )
            for r in mine:
                case = ET.SubElement(
                    suite, "testcase", classname=t.name, name=r.check, time=f"{r.duration_s:.3f}"
                )
                props = ET.SubElement(case, "properties")
                ET.SubElement(props, "property", name="status", value=r.status)
                for claim in r.claims:
                    ET.SubElement(props, "property", name="claim", value=claim)
                if r.status == FAIL:
                    node = ET.SubElement(case, "failure", message=r.message, type=r.failure_kind or "fail")
                    node.text = self.failure_text(r)
                elif r.status == ERROR:
                    node = ET.SubElement(case, "error", message=r.message, type="harness-error")
                    node.text = self.failure_text(r)
                elif r.status == KNOWN_DEVIATION:
                    d = r.deviation or {}
                    case.set("file", str(d.get("source", "")))
                    message = f"known deviation ({d.get('category')}): {d.get('reason', '')}"
                    node = ET.SubElement(case, "skipped", message=message, type=SKIPPED_TYPES[r.status])
                    node.text = self.failure_text(r)
                elif r.status in (BLOCKED, NOT_APPLICABLE):
                    if r.status == NOT_APPLICABLE and t.source:
                        case.set("file", t.source)
                    message = f"{r.status}: {r.message}"
                    ET.SubElement(case, "skipped", message=message, type=SKIPPED_TYPES[r.status])
            if is_empty:
                case = ET.SubElement(suite, "testcase", classname=t.name, name="no-check-applied")
                ET.SubElement(case, "failure", message="no check applied to this target", type="empty-target")
            for s in stale:
                case = ET.SubElement(suite, "testcase", classname=t.name, name=f"deviation#{s['index']}")
                ET.SubElement(case, "failure", message=f"stale deviation: {s['why']}", type="stale-deviation")
        path.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)

    def markdown(self) -> str:
        """The Markdown report: configuration, per-target totals, matrix, failures, deviations."""
        cfg = self.config
        out = [
            "# Conformance report",
            "",
            f"Device `{cfg.get('device')}`, dtype `{cfg.get('dtype')}`, profile `{cfg.get('profile')}`, "
            f"seed `{cfg.get('seed')}`; exit code **{self.exit_code}**; {self.duration_s:.1f} s.",
            "",
            "| target | pass | fail | error | known-deviation | blocked | not-applicable | time (s) "
            "| in target (s) | harness (s) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for t in self.targets:
            c = t.counts
            out.append(
                f"| {t.name}{'' if t.gated else ' (not gated)'} | {c.get(PASS, 0)} | {c.get(FAIL, 0)} "
                f"| {c.get(ERROR, 0)} | {c.get(KNOWN_DEVIATION, 0)} | {c.get(BLOCKED, 0)} "
                f"| {c.get(NOT_APPLICABLE, 0)} | {t.total_time_s:.2f} | {t.target_time_s:.2f} "
                f"| {t.harness_time_s:.2f} |"
            )
        for name in self.empty:
            verdict = self.empty_verdict(name)
            out += ["", f"**EMPTY target {name}: no check applied, nothing was verified ({verdict}).**"]
        claims, targets, cells = self.matrix()
        out += [
            "",
            "## Claims x targets",
            "",
            "| claim | " + " | ".join(targets) + " |",
            "|---|" + "---|" * len(targets),
        ]
        for claim in claims:
            row = [SYMBOLS.get(cells.get((claim, t), ""), "-") for t in targets]
            row = [f"**{s}**" if s in ("FAIL", "ERR") else s for s in row]
            out.append(f"| `{claim}` | " + " | ".join(row) + " |")
        if self.failures:
            out += ["", "## Failures", ""]
            for r in self.failures:
                out += ["```", self.failure_text(r), "```", ""]
        if self.stale:
            out += ["", "## Stale deviation entries", ""]
            out += [
                f"- {s['target']}: {s['entry']} ({s['source']} #{s['index']}): {s['why']}" for s in self.stale
            ]
        devs = [r for r in self.results if r.status == KNOWN_DEVIATION]
        if devs:
            out += ["", "## Known deviations", ""]
            for r in devs:
                d = r.deviation or {}
                out.append(
                    f"- {r.target} / `{r.check}` ({d.get('category')}): {d.get('reason')} "
                    f"Observed: {r.message}"
                )
        return "\n".join(out) + "\n"

    def write_markdown(self, path: Path) -> None:
        """Write the Markdown report."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.markdown(), encoding="utf-8")
