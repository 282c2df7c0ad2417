"""Known deviations: ``conformance/deviations/<target>.toml`` turns matching failures into
"known-deviation"; an entry that matches no failing check is stale and fails the run.
``--deviations DIR`` adds ``DIR/<target>.toml`` to the built-in file (its entries replace built-in
ones with the same claim and check).

File format::

    [[deviation]]
    claim = "attention.fully-masked-row"     # required: a claim ID
    check = "attention.fully-masked-row"     # optional: restrict to one check of that claim
    category = "convention"                  # bug | convention | unsupported | precision
    reason = "returns NaN for a row with no visible key"
    dtypes = ["float16"]                     # optional: only judged for these dtypes
    devices = ["cuda"]                       # optional: only judged on these device types
"""

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

CATEGORIES = ("bug", "convention", "unsupported", "precision")
DEFAULT_DIR = Path(__file__).resolve().parent / "deviations"


class DeviationFileError(ValueError):
    """A malformed deviation file (names the file, the entry and the field)."""


@dataclass(frozen=True)
class Deviation:
    """One ``[[deviation]]`` entry."""

    claim: str
    category: str
    reason: str
    check: str | None = None
    dtypes: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    source: str = ""
    index: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    def applies_to_run(self, device_type: str, dtype_name: str) -> bool:
        """Whether this entry is judged under this device type and dtype."""
        return (not self.dtypes or dtype_name in self.dtypes) and (
            not self.devices or device_type in self.devices
        )

    def matches(self, check_id: str, claims: tuple[str, ...] | list[str]) -> bool:
        """Whether this entry covers the result of ``check_id`` (which realises ``claims``)."""
        return self.claim in claims and (self.check is None or self.check == check_id)

    def describe(self) -> str:
        """Short human form: ``claim[/check] (category): reason``."""
        where = self.claim + (f" / check {self.check}" if self.check else "")
        return f"{where} ({self.category}): {self.reason}"

    def to_json(self) -> dict[str, object]:
        """JSON form for reports."""
        return {
            "claim": self.claim,
            "check": self.check,
            "category": self.category,
            "reason": self.reason,
            "source": self.source,
            "index": self.index,
        }


def _strings(value: object, where: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise DeviationFileError(f"{where}: field '{key}' expected a string or list of strings, got {value!r}")


def load_file(path: Path) -> list[Deviation]:
    """Parse one deviation file; errors name the file, entry and field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DeviationFileError(f"{path}: not valid TOML: {exc}") from exc
    unknown_top = set(data) - {"deviation"}
    if unknown_top:
        raise DeviationFileError(f"{path}: expected only [[deviation]] tables, got {sorted(unknown_top)}")
    entries = data.get("deviation", [])
    if not isinstance(entries, list):
        raise DeviationFileError(f"{path}: 'deviation' must be an array of tables ([[deviation]])")
    result = []
    for i, entry in enumerate(entries):
        where = f"{path} [[deviation]] #{i + 1}"
        allowed = {"claim", "check", "category", "reason", "dtypes", "devices"}
        unknown = set(entry) - allowed
        if unknown:
            raise DeviationFileError(f"{where}: unknown fields {sorted(unknown)}; expected {sorted(allowed)}")
        for key in ("claim", "category", "reason"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise DeviationFileError(
                    f"{where}: field '{key}' expected a non-empty string, got {entry.get(key)!r}"
                )
        if entry["category"] not in CATEGORIES:
            raise DeviationFileError(
                f"{where}: field 'category' expected one of {CATEGORIES}, got {entry['category']!r}"
            )
        check = entry.get("check")
        if check is not None and not isinstance(check, str):
            raise DeviationFileError(f"{where}: field 'check' expected a string, got {check!r}")
        result.append(
            Deviation(
                claim=entry["claim"],
                category=entry["category"],
                reason=entry["reason"],
                check=check,
                dtypes=_strings(entry.get("dtypes", []), where, "dtypes"),
                devices=_strings(entry.get("devices", []), where, "devices"),
                source=str(path),
                index=i + 1,
            )
        )
    return result


def deviation_file(target: str, directory: Path | None = None) -> Path:
    """Where the deviation file of ``target`` lives (``<dir>/<target>.toml``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in target)
    return (directory or DEFAULT_DIR) / f"{safe}.toml"


def load_for_target(target: str, directory: Path | None = None) -> list[Deviation]:
    """The deviations declared for ``target``: the built-in file's entries, then those of
    ``<directory>/<target>.toml`` (``--deviations DIR``), which ADDS to the built-in ones. A user
    entry for the same claim and check (``check`` absent counts as its own key) replaces the
    built-in entry. No file anywhere: none."""
    files = [deviation_file(target)]
    if directory is not None and directory.resolve() != DEFAULT_DIR.resolve():
        files.append(deviation_file(target, directory))
    merged: dict[tuple[str, str | None], Deviation] = {}
    for path in files:
        for entry in load_file(path) if path.is_file() else []:
            merged.pop((entry.claim, entry.check), None)  # a later file's entry replaces, and goes last
            merged[(entry.claim, entry.check)] = entry
    return list(merged.values())
