"""The claim spec: ``claims.toml`` (every claim of the notes as a contract) and a stdlib-only loader.

``load_claims()`` returns the claims in file order, keyed by ID; ``load_notes()`` the source notes and
their headings; ``load_pending()`` the claims whose components are not built yet. Every inconsistency
in a spec file raises ``SpecError`` listing all problems found, not just the first.
"""

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPEC_DIR = Path(__file__).resolve().parent
CLAIMS_PATH = SPEC_DIR / "claims.toml"
PENDING_PATH = SPEC_DIR / "pending.toml"

STATUSES: tuple[str, ...] = ("holds", "refuted", "conditional", "informal")
#: Statuses that need at least one test (informal claims are explained, not tested).
TESTABLE_STATUSES: tuple[str, ...] = ("holds", "refuted", "conditional")
COMPONENTS: tuple[str, ...] = (
    "masks",
    "attention",
    "multihead",
    "cache",
    "positional",
    "embedding",
    "layernorm",
    "ffn",
    "sublayer",
    "encoder",
    "decoder",
    "model",
    "loss",
    "sampling",
    "generation",
    "config",
    # beyond the notes: architecture variants
    "architecture",
    "rotary",
    "alibi",
    "relative_bias",
    "rmsnorm",
    "gated_ffn",
    "grouped",
    "variant_lm",
    "variant_encdec",
    "name_tables",
    "presets",
    "grouped_mha",
)
#: Areas of claims beyond the notes (architecture variants): every claim in them has origin "project",
#: and SPEC.md renders them in their own part.
BEYOND_NOTES_AREAS: tuple[str, ...] = (
    "arch",
    "rotary",
    "alibi",
    "relbias",
    "rmsnorm",
    "gated",
    "gqa",
    "window",
    "scoring",
    "block",
    "lm",
)
#: The declared conventions of ``conformance.adapter.Conventions`` that a claim may depend on.
CONVENTIONS: tuple[str, ...] = (
    "mask_polarity",
    "causal_alignment",
    "fully_masked_row",
    "sinusoidal_layout",
    "norm_placement",
    "layer_norm_eps",
    "temperature_zero",
)
ORIGINS: tuple[str, ...] = ("notes", "project")
ID_PATTERN = re.compile(r"^[a-z0-9]+(\.[a-z0-9-]+)+$")

_REQUIRED = ("id", "area", "title", "statement", "status", "sources", "components")
_OPTIONAL = ("condition", "reason", "origin", "conventions", "justification")


class SpecError(ValueError):
    """A spec file does not parse or is inconsistent; ``problems`` lists every problem found."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__(f"{path}: " + "; ".join(self.problems))


@dataclass(frozen=True)
class Source:
    """One place a claim appears: a note file and a heading (or title-like line) in it."""

    note: str
    heading: str


@dataclass(frozen=True)
class Note:
    """A source note with the headings that claims may cite."""

    file: str
    label: str
    title: str
    headings: tuple[str, ...]


@dataclass(frozen=True)
class Claim:
    """One claim of the spec (see the field list at the top of ``claims.toml``)."""

    id: str
    area: str
    title: str
    statement: str
    status: str
    sources: tuple[Source, ...]
    components: tuple[str, ...]
    conventions: tuple[str, ...] = ()
    condition: str | None = None
    reason: str | None = None
    origin: str = "notes"
    justification: str | None = None

    @property
    def needs_test(self) -> bool:
        """True for holds / refuted / conditional claims: they must be realised by at least one test."""
        return self.status in TESTABLE_STATUSES


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as e:
        raise SpecError(path, [f"file not found: {e.filename}"]) from e
    except tomllib.TOMLDecodeError as e:
        raise SpecError(path, [f"TOML parse error: {e}"]) from e


def _text(entry: Mapping[str, Any], key: str, where: str, problems: list[str]) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
        return ""
    return value


def _str_list(entry: Mapping[str, Any], key: str, where: str, problems: list[str]) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where}: field {key!r} must be a list of strings, got {value!r}")
        return ()
    return tuple(value)


def _parse_notes(data: Mapping[str, Any], problems: list[str]) -> dict[str, Note]:
    raw = data.get("note", [])
    notes: dict[str, Note] = {}
    if not isinstance(raw, list) or not raw:
        problems.append("no [[note]] entries: the notes that claims cite must be declared")
        return notes
    for i, entry in enumerate(raw):
        where = f"note #{i + 1}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a table")
            continue
        file = _text(entry, "file", where, problems)
        note = Note(
            file=file,
            label=_text(entry, "label", where, problems),
            title=_text(entry, "title", where, problems),
            headings=_str_list(entry, "headings", where, problems),
        )
        if file in notes:
            problems.append(f"{where}: note {file!r} declared twice")
        notes[file] = note
    return notes


def _parse_sources(
    entry: Mapping[str, Any], where: str, notes: Mapping[str, Note], problems: list[str]
) -> tuple[Source, ...]:
    raw = entry.get("sources")
    if not isinstance(raw, list):
        problems.append(f"{where}: field 'sources' must be a list of {{note, heading}} tables")
        return ()
    sources: list[Source] = []
    for item in raw:
        if not isinstance(item, dict) or set(item) != {"note", "heading"}:
            problems.append(f"{where}: each source must be {{note = ..., heading = ...}}, got {item!r}")
            continue
        note, heading = item["note"], item["heading"]
        if not isinstance(note, str) or not isinstance(heading, str):
            problems.append(f"{where}: source note and heading must be strings, got {item!r}")
            continue
        if note not in notes:
            problems.append(f"{where}: source names unknown note {note!r} (declared: {sorted(notes)})")
        elif heading not in notes[note].headings:
            problems.append(f"{where}: heading {heading!r} is not a declared heading of note {note!r}")
        src = Source(note, heading)
        if src in sources:
            problems.append(f"{where}: source {note!r} / {heading!r} listed twice")
        sources.append(src)
    return tuple(sources)


def _parse_claim(
    entry: Mapping[str, Any], index: int, notes: Mapping[str, Note], problems: list[str]
) -> Claim | None:
    raw_id = entry.get("id")
    where = f"claim #{index + 1}" + (f" ({raw_id!r})" if isinstance(raw_id, str) else "")
    before = len(problems)
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        problems.append(f"{where}: missing required field(s) {', '.join(missing)}")
        return None
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(unknown)}")

    claim_id = _text(entry, "id", where, problems)
    if claim_id and not ID_PATTERN.match(claim_id):
        problems.append(f"{where}: bad ID syntax {claim_id!r} (expected {ID_PATTERN.pattern})")
    area = _text(entry, "area", where, problems)
    if claim_id and area and area != claim_id.split(".")[0]:
        problems.append(f"{where}: area {area!r} is not the first segment of the ID")
    title = _text(entry, "title", where, problems)
    statement = _text(entry, "statement", where, problems)
    status = _text(entry, "status", where, problems)
    if status and status not in STATUSES:
        problems.append(f"{where}: bad status {status!r} (expected one of {', '.join(STATUSES)})")

    condition = entry.get("condition")
    reason = entry.get("reason")
    justification = entry.get("justification")
    for key, value in (("condition", condition), ("reason", reason), ("justification", justification)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            problems.append(f"{where}: field {key!r} must be a non-empty string when present")
    if status == "conditional" and condition is None:
        problems.append(f"{where}: a conditional claim needs a 'condition'")
    if status != "conditional" and condition is not None:
        problems.append(f"{where}: 'condition' is only allowed on conditional claims (status {status!r})")
    if status == "informal" and reason is None:
        problems.append(f"{where}: an informal claim needs a 'reason' (why no code can check it)")
    if status == "refuted" and reason is None:
        problems.append(f"{where}: a refuted claim needs a 'reason' (the counterexample)")
    if status == "holds" and reason is not None:
        problems.append(f"{where}: 'reason' is not allowed on a claim that holds")

    origin = entry.get("origin", "notes")
    if origin not in ORIGINS:
        problems.append(f"{where}: bad origin {origin!r} (expected one of {', '.join(ORIGINS)})")
    if area in BEYOND_NOTES_AREAS and origin != "project":
        problems.append(f'{where}: area {area!r} is beyond the notes; its claims need origin = "project"')
    sources = _parse_sources(entry, where, notes, problems)
    if not sources and origin == "notes":
        problems.append(f'{where}: no sources; cite the notes or declare origin = "project"')

    components = _str_list(entry, "components", where, problems)
    for comp in components:
        if comp not in COMPONENTS:
            problems.append(f"{where}: unknown component {comp!r} (expected one of {', '.join(COMPONENTS)})")
    if not components and status != "informal":
        problems.append(f"{where}: 'components' may be empty only for informal claims")
    conventions = _str_list(entry, "conventions", where, problems)
    for conv in conventions:
        if conv not in CONVENTIONS:
            expected = ", ".join(CONVENTIONS)
            problems.append(f"{where}: unknown convention {conv!r} (expected one of {expected})")

    if len(problems) > before:
        return None
    return Claim(
        id=claim_id,
        area=area,
        title=title,
        statement=statement,
        status=status,
        sources=sources,
        components=components,
        conventions=conventions,
        condition=condition,
        reason=reason,
        origin=str(origin),
        justification=justification,
    )


def load_notes(path: Path | str | None = None) -> dict[str, Note]:
    """The notes declared in the claims file, keyed by file name. Raises SpecError when inconsistent."""
    file = Path(path) if path is not None else CLAIMS_PATH
    problems: list[str] = []
    notes = _parse_notes(_read_toml(file), problems)
    if problems:
        raise SpecError(file, problems)
    return notes


def load_claims(path: Path | str | None = None) -> dict[str, Claim]:
    """Every claim of the spec, keyed by ID in file order.

    Raises SpecError (listing every problem) on a parse error, a duplicate ID, a missing or unknown
    field, a bad status / ID / component / convention, a conditional without condition, an informal or
    refuted claim without reason, or a source that names an undeclared note or heading.
    """
    file = Path(path) if path is not None else CLAIMS_PATH
    data = _read_toml(file)
    problems: list[str] = []
    unknown_tables = sorted(set(data) - {"note", "claim"})
    if unknown_tables:
        problems.append(f"unknown top-level key(s) {', '.join(unknown_tables)}")
    notes = _parse_notes(data, problems)
    raw = data.get("claim", [])
    if not isinstance(raw, list) or not raw:
        problems.append("no [[claim]] entries")
        raw = []
    claims: dict[str, Claim] = {}
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            problems.append(f"claim #{index + 1}: expected a table")
            continue
        claim = _parse_claim(entry, index, notes, problems)
        if claim is None:
            continue
        if claim.id in claims:
            problems.append(f"claim #{index + 1}: duplicate ID {claim.id!r}")
            continue
        claims[claim.id] = claim
    if problems:
        raise SpecError(file, problems)
    return claims


def load_pending(path: Path | str | None = None) -> dict[str, str]:
    """Pending claim IDs (components nobody has built yet) -> reason. Raises SpecError when malformed."""
    file = Path(path) if path is not None else PENDING_PATH
    data = _read_toml(file)
    problems: list[str] = []
    unknown = sorted(set(data) - {"pending"})
    if unknown:
        problems.append(f"unknown top-level key(s) {', '.join(unknown)}")
    raw = data.get("pending", [])
    pending: dict[str, str] = {}
    if not isinstance(raw, list):
        raw = []
        problems.append("'pending' must be an array of tables")
    for i, entry in enumerate(raw):
        where = f"pending #{i + 1}"
        if not isinstance(entry, dict) or set(entry) != {"id", "reason"}:
            problems.append(f"{where}: expected exactly the fields id and reason, got {entry!r}")
            continue
        claim_id, reason = entry["id"], entry["reason"]
        if not isinstance(claim_id, str) or not isinstance(reason, str) or not reason.strip():
            problems.append(f"{where}: id and reason must be non-empty strings")
            continue
        if claim_id in pending:
            problems.append(f"{where}: {claim_id!r} listed twice")
        pending[claim_id] = reason
    if problems:
        raise SpecError(file, problems)
    return pending


__all__ = [
    "BEYOND_NOTES_AREAS",
    "CLAIMS_PATH",
    "COMPONENTS",
    "CONVENTIONS",
    "ID_PATTERN",
    "ORIGINS",
    "PENDING_PATH",
    "STATUSES",
    "TESTABLE_STATUSES",
    "Claim",
    "Note",
    "Source",
    "SpecError",
    "load_claims",
    "load_notes",
    "load_pending",
]
