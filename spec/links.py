"""Static scan of the claim references in tests and conformance checks (stdlib only, via ``ast``).

Tests cite claims with ``pytest.mark.claim("id", ...)`` as a decorator of the test function itself,
or inside ``pytest.param(..., marks=...)`` of that test's parametrisation (directly in a decorator or in
a module-level list the decorator names). Checks cite claims with
``@check("check.id", claims=("id", ...))`` in ``conformance/checks/**/*.py``. Nothing is imported:
the scan sees exactly what the source says, so it works before the code it scans can run.

Crediting rule: a claim is credited only to a test that carries its marker. A claim marker in a
module- or class-level ``pytestmark``, on a class, or in a module-level name that no test's decorator
uses would credit every test of the file (or class), or none, whatever each test checks; the scan
reports each such marker as a problem and credits nothing for it (docs/ARCHITECTURE.md).
"""

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = "tests"
CHECKS_DIR = "conformance/checks"


@dataclass(frozen=True)
class TestRef:
    """A test that cites a claim. ``test`` is ``func``, ``Class::method`` or a module-level name."""

    __test__ = False  # not a pytest test class despite the name

    claim_id: str
    path: str
    test: str
    line: int

    @property
    def target(self) -> str:
        """``path::test``, the pytest node ID without parameters."""
        return f"{self.path}::{self.test}"


@dataclass(frozen=True)
class CheckRef:
    """A conformance check as declared by its ``@check(...)`` decorator."""

    check_id: str
    claims: tuple[str, ...]
    path: str
    function: str
    line: int

    @property
    def target(self) -> str:
        """``path::function``."""
        return f"{self.path}::{self.function}"


@dataclass
class Links:
    """Everything the scan found, plus the places it could not read statically."""

    tests: list[TestRef] = field(default_factory=list)
    checks: list[CheckRef] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def tests_by_claim(self) -> dict[str, list[str]]:
        """Claim ID -> sorted, de-duplicated ``path::test`` targets."""
        out: dict[str, set[str]] = {}
        for ref in self.tests:
            out.setdefault(ref.claim_id, set()).add(ref.target)
        return {k: sorted(v) for k, v in sorted(out.items())}

    def checks_by_claim(self) -> dict[str, list[str]]:
        """Claim ID -> sorted ``path::function`` targets of the checks citing it."""
        out: dict[str, set[str]] = {}
        for ref in self.checks:
            for claim_id in ref.claims:
                out.setdefault(claim_id, set()).add(ref.target)
        return {k: sorted(v) for k, v in sorted(out.items())}

    def referenced_ids(self) -> dict[str, list[str]]:
        """Every claim ID cited anywhere -> the tests and checks citing it."""
        out: dict[str, set[str]] = {}
        for ref in self.tests:
            out.setdefault(ref.claim_id, set()).add(ref.target)
        for check in self.checks:
            for claim_id in check.claims:
                out.setdefault(claim_id, set()).add(check.target)
        return {k: sorted(v) for k, v in sorted(out.items())}


# ----------------------------------------------------------------------------- helpers


def _python_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob("*.py") if "__pycache__" not in p.parts)


def _parse(path: Path, rel: str, problems: list[str]) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    except (SyntaxError, UnicodeDecodeError) as e:
        problems.append(f"{rel}: cannot parse ({e})")
        return None


def _module_assignments(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level ``NAME = value`` (and annotated) assignments."""
    out: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            out[node.target.id] = node.value
    return out


def _strings(
    node: ast.expr, consts: dict[str, ast.expr], seen: frozenset[str] = frozenset()
) -> list[str] | None:
    """The string constants ``node`` stands for (a string, a tuple/list of them, a constant's name)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Starred):
        return _strings(node.value, consts, seen)
    if isinstance(node, ast.Name) and node.id in consts and node.id not in seen:
        return _strings(consts[node.id], consts, seen | {node.id})
    if isinstance(node, (ast.Tuple, ast.List)):
        out: list[str] = []
        for elt in node.elts:
            part = _strings(elt, consts, seen)
            if part is None:
                return None
            out.extend(part)
        return out
    return None


def _is_pytest_mark(node: ast.expr, mark_names: set[str]) -> bool:
    """``pytest.mark`` (or a name bound to it by ``from pytest import mark``)."""
    if isinstance(node, ast.Attribute) and node.attr == "mark":
        return isinstance(node.value, ast.Name) and node.value.id == "pytest"
    return isinstance(node, ast.Name) and node.id in mark_names


def _is_claim_marker(call: ast.Call, mark_names: set[str], claim_names: set[str]) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "claim":
        return _is_pytest_mark(func.value, mark_names)
    return isinstance(func, ast.Name) and func.id in claim_names


def _aliases(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names bound to ``pytest.mark`` and to ``pytest.mark.claim`` at module level."""
    mark_names: set[str] = set()
    claim_names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "pytest":
            for alias in node.names:
                if alias.name == "mark":
                    mark_names.add(alias.asname or "mark")
    for name, value in _module_assignments(tree).items():
        if _is_pytest_mark(value, mark_names):
            mark_names.add(name)
    for name, value in _module_assignments(tree).items():
        is_claim = isinstance(value, ast.Attribute) and value.attr == "claim"
        if is_claim and isinstance(value, ast.Attribute) and _is_pytest_mark(value.value, mark_names):
            claim_names.add(name)
    return mark_names, claim_names


class _TestFileScanner:
    def __init__(self, tree: ast.Module, rel: str, problems: list[str]) -> None:
        self.tree = tree
        self.rel = rel
        self.problems = problems
        self.consts = _module_assignments(tree)
        self.mark_names, self.claim_names = _aliases(tree)
        self.used_names: set[str] = set()

    def markers_in(self, node: ast.AST, seen: frozenset[str] = frozenset()) -> Iterator[tuple[str, int]]:
        """Claim IDs of every claim marker inside ``node``, following module-level names it uses."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and _is_claim_marker(sub, self.mark_names, self.claim_names):
                if not sub.args:
                    self.problems.append(f"{self.rel}:{sub.lineno}: claim marker without claim IDs")
                for arg in sub.args:
                    ids = _strings(arg, self.consts)
                    if ids is None:
                        self.problems.append(
                            f"{self.rel}:{sub.lineno}: claim ID is not a string literal or constant: "
                            f"{ast.unparse(arg)}"
                        )
                        continue
                    for claim_id in ids:
                        yield claim_id, sub.lineno
            elif (
                isinstance(sub, ast.Name)
                and sub.id in self.consts
                and sub.id not in seen
                and sub.id not in self.claim_names
            ):
                self.used_names.add(sub.id)
                yield from self.markers_in(self.consts[sub.id], seen | {sub.id})

    def _pytestmark(self, body: Iterable[ast.stmt]) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for node in body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
            ):
                out.extend(self.markers_in(node.value))
        return out

    def _reject(self, marks: list[tuple[str, int]], where: str) -> None:
        """Report claim markers that would credit tests wholesale (see the module docstring)."""
        for claim_id, line in marks:
            self.problems.append(
                f"{self.rel}:{line}: claim {claim_id!r} in {where} would credit tests that may not check "
                "it; put @pytest.mark.claim on each test that checks the claim"
            )

    def scan(self) -> list[TestRef]:
        refs: list[TestRef] = []
        self._reject(self._pytestmark(self.tree.body), "a module-level pytestmark")
        self.used_names.add("pytestmark")
        self._scan_body(self.tree.body, "", refs)
        for name, value in self.consts.items():
            if name in self.used_names or name in self.claim_names:
                continue
            unused = f"module-level name {name!r}, which no test's decorator uses"
            self._reject(list(self.markers_in(value)), unused)
        return refs

    def _scan_body(self, body: Iterable[ast.stmt], prefix: str, refs: list[TestRef]) -> None:
        """Credit each test function of ``body`` with the claims of its own decorators."""
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                own = [m for dec in node.decorator_list for m in self.markers_in(dec)]
                if own and not node.name.startswith("test"):
                    self._reject(own, f"the decorator of {prefix + node.name!r}, which is not a test")
                    continue
                refs.extend(TestRef(cid, self.rel, prefix + node.name, line) for cid, line in own)
            elif isinstance(node, ast.ClassDef):
                name = prefix + node.name
                on_class = [m for dec in node.decorator_list for m in self.markers_in(dec)]
                self._reject(on_class, f"class {name!r}")
                self._reject(self._pytestmark(node.body), f"the pytestmark of class {name!r}")
                self._scan_body(node.body, f"{name}::", refs)


def scan_test_file(path: Path, rel: str, problems: list[str]) -> list[TestRef]:
    """Claim references of one test file (``rel`` is its path as reported)."""
    tree = _parse(path, rel, problems)
    if tree is None:
        return []
    return _TestFileScanner(tree, rel, problems).scan()


def _is_check_call(node: ast.AST) -> ast.Call | None:
    """``check(...)`` or ``<registry>.check(...)``."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Name) and func.id == "check":
        return node
    if isinstance(func, ast.Attribute) and func.attr == "check":
        owner = func.value
        if isinstance(owner, ast.Name) and "registry" in owner.id.lower():
            return node
    return None


def scan_check_file(path: Path, rel: str, problems: list[str]) -> list[CheckRef]:
    """The ``@check(...)`` declarations of one check module."""
    tree = _parse(path, rel, problems)
    if tree is None:
        return []
    consts = _module_assignments(tree)
    out: list[CheckRef] = []
    decorators: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for dec in node.decorator_list:
            call = _is_check_call(dec)
            if call is None:
                continue
            decorators.add(id(call))
            where = f"{rel}:{call.lineno} ({node.name})"
            id_node = (
                call.args[0]
                if call.args
                else next((kw.value for kw in call.keywords if kw.arg == "check_id"), None)
            )
            check_ids = _strings(id_node, consts) if id_node is not None else None
            if not check_ids or len(check_ids) != 1:
                problems.append(f"{where}: check ID is not a string literal")
                continue
            claims_node = next((kw.value for kw in call.keywords if kw.arg == "claims"), None)
            claims = _strings(claims_node, consts) if claims_node is not None else None
            if claims is None:
                problems.append(f"{where}: claims=... is missing or not a tuple of string literals")
                continue
            out.append(CheckRef(check_ids[0], tuple(claims), rel, node.name, call.lineno))
    for node in ast.walk(tree):
        call = _is_check_call(node)
        if call is not None and id(call) not in decorators:
            problems.append(
                f"{rel}:{call.lineno}: check registered by a call, not a literal @check(...) decorator; "
                "its claims cannot be read statically"
            )
    return out


def scan_tests(root: Path | None = None, tests_dir: str = TESTS_DIR) -> Links:
    """Claim references of every ``tests/**/*.py`` under ``root``."""
    base = root if root is not None else ROOT
    links = Links()
    for path in _python_files(base / tests_dir):
        rel = path.relative_to(base).as_posix()
        links.tests.extend(scan_test_file(path, rel, links.problems))
    return links


def scan_checks(root: Path | None = None, checks_dir: str = CHECKS_DIR) -> Links:
    """Check declarations of every ``conformance/checks/**/*.py`` under ``root``."""
    base = root if root is not None else ROOT
    links = Links()
    for path in _python_files(base / checks_dir):
        rel = path.relative_to(base).as_posix()
        links.checks.extend(scan_check_file(path, rel, links.problems))
    return links


def collect(root: Path | None = None, tests_dir: str = TESTS_DIR, checks_dir: str = CHECKS_DIR) -> Links:
    """Tests and checks under ``root`` (default: this repository), with the problems met on the way."""
    tests = scan_tests(root, tests_dir)
    checks = scan_checks(root, checks_dir)
    return Links(tests.tests, checks.checks, tests.problems + checks.problems)


__all__ = [
    "CHECKS_DIR",
    "ROOT",
    "TESTS_DIR",
    "CheckRef",
    "Links",
    "TestRef",
    "collect",
    "scan_check_file",
    "scan_checks",
    "scan_test_file",
    "scan_tests",
]
