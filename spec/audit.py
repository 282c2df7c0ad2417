"""Consistency checks between the spec, the tests and the conformance checks.

Every function returns a list of human-readable problems (empty = consistent), so the meta-tests can
assert that the repository has none and that deliberately broken (planted) trees are reported.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from transformer_conformance.spec import Claim, SpecError, load_claims, load_pending
from transformer_conformance.spec.links import CheckRef, Links, collect


def spec_problems(claims_path: Path | str | None = None) -> list[str]:
    """Everything wrong with a claims file: parse errors, duplicate IDs, missing fields, bad values."""
    try:
        load_claims(claims_path)
    except SpecError as e:
        return list(e.problems)
    return []


def pending_file_problems(pending_path: Path | str | None = None) -> list[str]:
    """Everything wrong with the format of a pending file."""
    try:
        load_pending(pending_path)
    except SpecError as e:
        return list(e.problems)
    return []


def unknown_id_problems(claims: Mapping[str, Claim], links: Links) -> list[str]:
    """Tests or checks that cite a claim ID the spec does not define."""
    problems: list[str] = []
    for ref in links.tests:
        if ref.claim_id not in claims:
            problems.append(f"{ref.path}:{ref.line} ({ref.test}): unknown claim ID {ref.claim_id!r}")
    for check in links.checks:
        for claim_id in check.claims:
            if claim_id not in claims:
                problems.append(
                    f"{check.path}:{check.line} (check {check.check_id!r}): unknown claim ID {claim_id!r}"
                )
    return sorted(set(problems))


def untested_claims(
    claims: Mapping[str, Claim], links: Links, pending: Mapping[str, str] | None = None
) -> list[str]:
    """IDs of holds / refuted / conditional claims that no test cites and that are not pending."""
    tested = {ref.claim_id for ref in links.tests}
    skip = pending or {}
    return [cid for cid, c in claims.items() if c.needs_test and cid not in tested and cid not in skip]


def coverage_problems(
    claims: Mapping[str, Claim], links: Links, pending: Mapping[str, str] | None = None
) -> list[str]:
    """One line per untested claim: ID, status, components (so the owner is obvious)."""
    return [
        f"{cid} [{claims[cid].status}; components: {', '.join(claims[cid].components)}]: no test cites it"
        for cid in untested_claims(claims, links, pending)
    ]


def pending_problems(claims: Mapping[str, Claim], links: Links, pending: Mapping[str, str]) -> list[str]:
    """Stale pending entries: unknown IDs, informal claims (never need a test), already tested claims."""
    tested = links.tests_by_claim()
    problems: list[str] = []
    for cid in pending:
        if cid not in claims:
            problems.append(f"pending {cid!r}: not a claim of the spec")
        elif not claims[cid].needs_test:
            problems.append(f"pending {cid!r}: an {claims[cid].status} claim needs no test; remove it")
        elif cid in tested:
            problems.append(f"pending {cid!r}: already tested by {', '.join(tested[cid])}; remove it")
    return problems


class RuntimeCheck(Protocol):
    """What the registry's CheckSpec offers that the comparison needs."""

    @property
    def id(self) -> str: ...

    @property
    def claims(self) -> tuple[str, ...]: ...


def registry_problems(static: Iterable[CheckRef], runtime: Iterable[RuntimeCheck]) -> list[str]:
    """Differences between the statically scanned ``@check`` declarations and the runtime registry."""
    static_map: dict[str, CheckRef] = {}
    problems: list[str] = []
    for ref in static:
        if ref.check_id in static_map:
            first = static_map[ref.check_id].target
            problems.append(f"check {ref.check_id!r} declared twice ({first}, {ref.target})")
        static_map[ref.check_id] = ref
    runtime_map = {spec.id: tuple(spec.claims) for spec in runtime}
    for cid in sorted(set(runtime_map) - set(static_map)):
        problems.append(f"check {cid!r} is registered at run time but the static scan does not see it")
    for cid in sorted(set(static_map) - set(runtime_map)):
        where = static_map[cid].target
        problems.append(f"check {cid!r} ({where}) is declared but not registered at run time")
    for cid in sorted(set(static_map) & set(runtime_map)):
        if sorted(static_map[cid].claims) != sorted(runtime_map[cid]):
            problems.append(
                f"check {cid!r}: static claims {sorted(static_map[cid].claims)} != "
                f"registered claims {sorted(runtime_map[cid])}"
            )
    return problems


@dataclass
class AuditReport:
    """All problem lists for one tree (see ``audit``)."""

    spec: list[str] = field(default_factory=list)
    pending_file: list[str] = field(default_factory=list)
    scan: list[str] = field(default_factory=list)
    unknown_ids: list[str] = field(default_factory=list)
    coverage: list[str] = field(default_factory=list)
    stale_pending: list[str] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)

    def all_problems(self) -> list[str]:
        """Every problem except coverage gaps, prefixed by its kind."""
        out: list[str] = []
        for kind in ("spec", "pending_file", "scan", "unknown_ids", "stale_pending"):
            out.extend(f"[{kind}] {p}" for p in getattr(self, kind))
        return out


def audit(
    root: Path | None = None,
    claims_path: Path | str | None = None,
    pending_path: Path | str | None = None,
    tests_dir: str = "tests",
    checks_dir: str = "conformance/checks",
) -> AuditReport:
    """Audit a tree: the spec file, the pending file, and the claim references of tests and checks."""
    report = AuditReport(spec=spec_problems(claims_path), pending_file=pending_file_problems(pending_path))
    links = collect(root, tests_dir, checks_dir)
    report.scan = sorted(set(links.problems))
    if report.spec:
        return report
    claims = load_claims(claims_path)
    report.pending = {} if report.pending_file else load_pending(pending_path)
    report.unknown_ids = unknown_id_problems(claims, links)
    report.coverage = coverage_problems(claims, links, report.pending)
    report.stale_pending = pending_problems(claims, links, report.pending)
    return report


__all__ = [
    "AuditReport",
    "RuntimeCheck",
    "audit",
    "coverage_problems",
    "pending_file_problems",
    "pending_problems",
    "registry_problems",
    "spec_problems",
    "unknown_id_problems",
    "untested_claims",
]
