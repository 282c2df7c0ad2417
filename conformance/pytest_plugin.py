"""pytest plugin (entry point ``transformer_conformance``): ``pytest --conformance-impl TARGET``.

With the option, one test item per (target, check) is collected (node IDs
``conformance::TARGET::CHECK``, so ``-k`` and ``--collect-only`` see them): it fails with the
failure text, is skipped for not-applicable / blocked results and xfails for known deviations; a
stale deviation entry adds a failing ``TARGET::deviations`` item. Without the option the plugin
adds nothing. The audit runs once, lazily, when the first conformance item runs, for the
selected items only.

Installed, the entry point loads the plugin: use the bare option. ``-p transformer_conformance.pytest_plugin``
(needed only when the package is not installed) is harmless when it is: the entry point is then
skipped instead of registering the same module twice.
"""

import os
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported inside the hooks, only when an audit is asked for (torch is heavy)
    from transformer_conformance.registry import Registry
    from transformer_conformance.report import AuditReport

_STATE = pytest.StashKey["_AuditState"]()
ENTRY_POINT = "transformer_conformance"


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Register the ``--conformance-*`` options.

    Loaded by ``-p transformer_conformance.pytest_plugin`` (not by the entry point): block the entry point,
    which would otherwise try to register this module a second time and abort pytest."""
    if pluginmanager.get_plugin(ENTRY_POINT) is None:
        pluginmanager.set_blocked(ENTRY_POINT)
    group = parser.getgroup("conformance", "Transformer conformance audit")
    group.addoption(
        "--conformance-impl",
        default=os.environ.get("CONFORMANCE_IMPL") or None,
        metavar="TARGET[,TARGET...]",
        help="audit these targets (built-in names or package.module:factory, imported with the "
        "current directory on sys.path; default: $CONFORMANCE_IMPL)",
    )
    group.addoption("--conformance-profile", default="ci", choices=["quick", "ci", "thorough"])
    group.addoption("--conformance-device", default="cpu", help="cpu | cuda | auto")
    group.addoption("--conformance-dtype", default="float32")
    group.addoption("--conformance-seed", type=int, default=None)
    group.addoption("--conformance-timeout", type=float, default=None, help="per-check time limit (s)")
    group.addoption(
        "--conformance-deviations",
        default=None,
        metavar="DIR",
        help="directory of <target>.toml known-deviation files, added to the built-in ones (an entry "
        "for the same claim and check replaces the built-in entry)",
    )
    group.addoption(
        "--conformance-checks-from",
        default=None,
        metavar="MODULE:REGISTRY",
        help="a custom check registry instead of the built-in checks",
    )


class _AuditState:
    def __init__(
        self, config: pytest.Config, impls: list[str], registry: "Registry", names: list[str]
    ) -> None:
        self.config = config
        self.impls = impls
        self.registry = registry
        self.names = names
        self.report: AuditReport | None = None

    def ensure_run(self, session: pytest.Session) -> "AuditReport":
        from transformer_conformance.api import UsageError, run_audit

        if self.report is None:
            mine = [i for i in session.items if isinstance(i, ConformanceItem)]
            wanted = sorted({i.check_id for i in mine if i.check_id})
            opt = self.config.getoption
            try:
                self.report = run_audit(
                    self.impls,
                    device=opt("conformance_device"),
                    dtype=opt("conformance_dtype"),
                    profile=opt("conformance_profile"),
                    seed=opt("conformance_seed"),
                    timeout=opt("conformance_timeout"),
                    check=wanted or None,
                    registry=self.registry,
                    deviations_dir=opt("conformance_deviations"),
                    progress=False,
                )
            except UsageError as exc:
                raise pytest.UsageError(f"conformance: {exc}") from exc
        return self.report


class ConformanceFailure(Exception):
    """A failed check; its text is the report's failure description."""


class ConformanceItem(pytest.Item):
    """One (target, check) pair, or a target's deviation-file item when ``check_id`` is None."""

    def __init__(self, *, target: str, check_id: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.check_id = check_id

    def runtest(self) -> None:
        """Look up (running the audit first if needed) this item's result and map it to an outcome."""
        from transformer_conformance.runner import BLOCKED, ERROR, FAIL, KNOWN_DEVIATION, NOT_APPLICABLE

        state = self.config.stash[_STATE]
        report = state.ensure_run(self.session)
        if self.check_id is None:
            stale = [s for s in report.stale if s["target"] == self.target]
            if stale:
                raise ConformanceFailure(
                    "\n".join(
                        f"stale deviation {s['entry']} ({s['source']} #{s['index']}): {s['why']}"
                        for s in stale
                    )
                )
            return
        key = (self.target, self.check_id)
        result = next((r for r in report.results if (r.target, r.check) == key), None)
        if result is None:
            pytest.skip("check not run")
        if result.status in (FAIL, ERROR):
            raise ConformanceFailure(report.failure_text(result))
        if result.status in (NOT_APPLICABLE, BLOCKED):
            pytest.skip(f"{result.status}: {result.message}")
        if result.status == KNOWN_DEVIATION:
            reason = (result.deviation or {}).get("reason", "")
            pytest.xfail(f"known deviation: {reason} ({result.message})")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        """The failure text (claims, inputs, errors, repro) instead of a traceback."""
        if isinstance(excinfo.value, ConformanceFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[str, int | None, str]:
        """Location shown by pytest."""
        return "conformance", None, self.name


class ConformanceCollector(pytest.Collector):
    """The ``conformance`` node: one item per (target, check) and one deviations item per target."""

    def __init__(self, *, targets: list[str], registry: "Registry", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.targets = targets
        self.registry = registry

    def collect(self) -> Iterator[pytest.Item]:
        """Items named ``TARGET::CHECK`` and ``TARGET::deviations``."""
        for name in self.targets:
            for spec in self.registry.all():
                yield ConformanceItem.from_parent(
                    self, name=f"{name}::{spec.id}", target=name, check_id=spec.id
                )
            yield ConformanceItem.from_parent(self, name=f"{name}::deviations", target=name, check_id=None)

    def reportinfo(self) -> tuple[str, int | None, str]:
        """Location shown by pytest."""
        return "conformance", None, self.name


def pytest_collection(session: pytest.Session) -> None:
    """Resolve ``--conformance-*`` options before collecting (bad ones are usage errors)."""
    config = session.config
    impl = config.getoption("conformance_impl")
    if not impl:
        return
    from transformer_conformance.api import UsageError, load_registry, resolve_device
    from transformer_conformance.registry import load_builtin_checks
    from transformer_conformance.targets import TargetError, resolve_target

    impls = [s.strip() for s in str(impl).split(",") if s.strip()]
    checks_from = config.getoption("conformance_checks_from")
    try:
        resolve_device(config.getoption("conformance_device"))
        registry = load_registry(checks_from) if checks_from else load_builtin_checks()
        names = [resolve_target(i).name for i in impls]
    except (UsageError, TargetError) as exc:
        raise pytest.UsageError(f"conformance: {exc}") from exc
    config.stash[_STATE] = _AuditState(config, impls, registry, names)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Add the ``conformance`` collector under the session, so its items are collected (and
    counted, selected by ``-k``, listed by ``--collect-only``) like any other test."""
    report = yield
    state = collector.config.stash.get(_STATE, None)
    if isinstance(collector, pytest.Session) and state is not None and report.passed:
        report.result.append(
            ConformanceCollector.from_parent(
                collector,
                name="conformance",
                nodeid="conformance",
                targets=state.names,
                registry=state.registry,
            )
        )
    return report
