"""The list of checks: ``@check`` registers a function with its claims, needs and dependencies.

Checks live in ``conformance/checks/*.py`` and register into the default registry on import.
Tests can build an isolated ``Registry()`` and use its own ``.check`` decorator.
"""

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from transformer_conformance.adapter import Capability

if TYPE_CHECKING:
    from transformer_conformance.context import CheckContext

CheckKind = Literal["structural", "metamorphic", "differential", "statistical"]
KINDS: tuple[str, ...] = ("structural", "metamorphic", "differential", "statistical")
CheckFn = Callable[["CheckContext"], None]


@dataclass(frozen=True)
class CheckSpec:
    """One registered check."""

    id: str
    claims: tuple[str, ...]
    needs: frozenset[Capability]
    depends_on: tuple[str, ...]
    kind: str
    fn: CheckFn
    doc: str


class Registry:
    """An ordered collection of checks with unique IDs."""

    def __init__(self) -> None:
        self._checks: dict[str, CheckSpec] = {}

    def add(self, spec: CheckSpec) -> None:
        """Register ``spec``; a duplicate ID is an error."""
        if spec.id in self._checks:
            raise ValueError(f"check id {spec.id!r} registered twice")
        self._checks[spec.id] = spec

    def check(
        self,
        check_id: str,
        *,
        claims: Iterable[str],
        needs: Iterable[Capability] = (),
        depends_on: Iterable[str] = (),
        kind: CheckKind = "structural",
    ) -> Callable[[CheckFn], CheckFn]:
        """Decorator registering ``fn`` as check ``check_id`` for ``claims``."""
        claim_ids = tuple(claims)
        if not claim_ids:
            raise ValueError(f"check {check_id!r}: 'claims' must name at least one claim ID")
        if kind not in KINDS:
            raise ValueError(f"check {check_id!r}: 'kind' expected one of {KINDS}, got {kind!r}")
        needed = frozenset(Capability(n) for n in needs)

        def decorate(fn: CheckFn) -> CheckFn:
            doc = " ".join((fn.__doc__ or "").split())
            self.add(CheckSpec(check_id, claim_ids, needed, tuple(depends_on), kind, fn, doc))
            return fn

        return decorate

    def get(self, check_id: str) -> CheckSpec:
        """The check with this ID (KeyError naming it otherwise)."""
        if check_id not in self._checks:
            raise KeyError(f"unknown check {check_id!r}")
        return self._checks[check_id]

    def __contains__(self, check_id: object) -> bool:
        return check_id in self._checks

    def __len__(self) -> int:
        return len(self._checks)

    def all(self) -> list[CheckSpec]:
        """Checks in registration order."""
        return list(self._checks.values())


#: The registry that ``conformance/checks/*`` register into.
DEFAULT_REGISTRY = Registry()
check = DEFAULT_REGISTRY.check


def load_builtin_checks() -> Registry:
    """Import ``transformer_conformance.checks`` (it imports every check module); return the registry."""
    importlib.import_module("transformer_conformance.checks")
    return DEFAULT_REGISTRY


def all_checks() -> list[CheckSpec]:
    """Every built-in check, in registration order."""
    return load_builtin_checks().all()
