"""pytest plugin (entry point ``transformer_conformance``): ``pytest --conformance-impl TARGET``.

Without the option (or ``CONFORMANCE_IMPL``) the plugin adds nothing and imports nothing heavy
(no torch, reference, jaxtyping or transformers): every import of the suite happens inside the
hooks, once an audit is asked for.

With it, each (target, check) is a real pytest item, ``conformance::TARGET::CHECK``, that runs its
own check when pytest runs it, plus ``conformance::TARGET::deviations`` (fails on a stale entry of
the target's deviation files, judged against the checks that ran before it in this process). So
``-k``, ``-m``, ``--lf``, node IDs (``pytest conformance::TARGET::CHECK --conformance-impl ...``),
JUnit times and pytest-xdist behave as for any test. Outcomes: fail (the failure text with its repro
command), xfail (known deviation), skip with a ``not-applicable: ...`` or ``blocked: ...`` reason.

Markers (registered): ``conformance`` on every item; ``claim(ID, id=ID)`` once per claim of the
check; ``capability(name=NAME)`` once per capability it needs; ``xdist_group(TARGET)``. Select with
``-m "claim(id='attention.formula')"``, ``-m "capability(name='mha')"`` or ``-k`` on IDs.

Dependencies: an item whose prerequisite check already ran for that target in this process and did
not pass (nor was not-applicable) is skipped as blocked, as in the CLI. A prerequisite that did not
run in this process (``-k``, a node ID, ``--lf``) is not run: the item runs regardless, exactly like
``transformer-conformance run --check ID`` and the printed repro commands. Under xdist, ``-n N``
with the default ``--dist load`` becomes ``--dist loadscope`` (with ``--conformance-impl`` only:
``conformance::TARGET`` is a scope), so a target's items share one worker: its adapter is built once
and its dependencies are seen. (``--dist loadgroup`` is kept; the items carry ``xdist_group(TARGET)``.)

Isolation: each target runs in its own worker process (``transformer_conformance.isolation``), as in
the CLI: one worker per target per pytest process (per xdist worker), started by the target's first
item and stopped at the end of the session; a worker that died (crash, exit, timeout, memory limit)
is restarted for the next item. ``--conformance-in-process`` runs the targets in the pytest process
(debugging only). A gated target none of whose checks run here applied (EMPTY: nothing was verified)
fails its ``deviations`` item unless ``--conformance-allow-empty``.

Installed, the entry point loads the plugin: use the bare option. ``-p transformer_conformance.pytest_plugin``
(needed only when the package is not installed) is harmless when it is: the entry point is then
skipped instead of registering the same module twice.
"""

import os
import random
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported inside the hooks, only when an audit is asked for (torch is heavy)
    from transformer_conformance.api import AuditPlan, TargetPlan
    from transformer_conformance.registry import Registry
    from transformer_conformance.report import AuditReport
    from transformer_conformance.runner import CheckResult

_STATE = pytest.StashKey["_AuditState"]()
ENTRY_POINT = "transformer_conformance"
#: The collection node holding every conformance item; node IDs start with ``conformance::``.
ROOT = "conformance"
IMPL_ENV = "CONFORMANCE_IMPL"
MARKERS = (
    "conformance: a (target, check) item of the transformer-conformance audit",
    "claim(*ids, id=None): a spec claim the item checks (select: -m \"claim(id='attention.formula')\")",
    "capability(name): a target capability the item's check needs (select: -m \"capability(name='mha')\")",
)


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Register the ``--conformance-*`` options.

    Loaded by ``-p transformer_conformance.pytest_plugin`` (not by the entry point): block the entry point,
    which would otherwise try to register this module a second time and abort pytest."""
    if pluginmanager.get_plugin(ENTRY_POINT) is None:
        pluginmanager.set_blocked(ENTRY_POINT)
    group = parser.getgroup("conformance", "Transformer conformance audit")
    group.addoption(
        "--conformance-impl",
        default=os.environ.get(IMPL_ENV) or None,
        metavar="TARGET[,TARGET...]",
        help="audit these targets (built-in names or package.module:factory, imported with the "
        f"current directory on sys.path; default: ${IMPL_ENV})",
    )
    group.addoption("--conformance-profile", default="ci", choices=["quick", "ci", "thorough", "kernel"])
    group.addoption("--conformance-device", default="cpu", help="cpu | cuda | auto")
    group.addoption("--conformance-dtype", default="float32")
    group.addoption("--conformance-seed", type=int, default=None)
    group.addoption("--conformance-timeout", type=float, default=None, help="per-check time limit (s)")
    group.addoption(
        "--conformance-threads",
        type=int,
        default=1,
        help="torch intra-op threads for the audit (default 1, as the CLI: small tensors, and xdist "
        "workers would oversubscribe the cores; 0 keeps torch's default)",
    )
    group.addoption(
        "--conformance-deviations",
        default=None,
        metavar="DIR",
        help="directory of <target>.toml known-deviation files, added to the built-in ones (an entry "
        "for the same claim and check replaces the built-in entry)",
    )
    group.addoption(
        "--conformance-in-process",
        action="store_true",
        help="run the targets in the pytest process (debugging only; unsafe for gating)",
    )
    group.addoption(
        "--conformance-memory-limit", type=float, default=None, metavar="MIB", help="per-target memory limit"
    )
    group.addoption(
        "--conformance-allow-empty",
        action="store_true",
        help="a target on which no check applies does not fail",
    )
    group.addoption(
        "--conformance-checks-from",
        default=None,
        metavar="MODULE:REGISTRY",
        help="a custom check registry instead of the built-in checks",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers; with an audit asked for, fix one seed for every xdist worker and
    group each target's items on one worker."""
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    if not config.getoption("conformance_impl"):
        return
    if config.getoption("conformance_seed") is None and config.getoption("conformance_profile") != "ci":
        # drawn once by the controller; xdist hands the options (this seed included) to its workers
        config.option.conformance_seed = random.SystemRandom().randrange(2**31)
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadscope"


class _AuditState:
    """Per process: the resolved plan (built on the first item that runs; its targets' workers start
    on their first item and stop in ``close``) and the results so far."""

    def __init__(
        self, config: pytest.Config, impls: list[str], registry: "Registry", names: list[str]
    ) -> None:
        self.config = config
        self.impls = impls
        self.registry = registry
        self.names = names
        self.selected: list[str] = []  # node-ID arguments naming conformance items
        self._plan: AuditPlan | None = None
        self._report: AuditReport | None = None
        self.results: dict[str, dict[str, CheckResult]] = {}

    def plan(self) -> "AuditPlan":
        """The audit plan of the ``--conformance-*`` options (targets built once per process)."""
        from transformer_conformance.api import UsageError, plan_audit

        if self._plan is None:
            opt = self.config.getoption
            if opt("conformance_threads") > 0:
                import torch

                torch.set_num_threads(opt("conformance_threads"))
            try:
                self._plan = plan_audit(
                    self.impls,
                    device=opt("conformance_device"),
                    dtype=opt("conformance_dtype"),
                    profile=opt("conformance_profile"),
                    seed=opt("conformance_seed"),
                    timeout=opt("conformance_timeout"),
                    registry=self.registry,
                    deviations_dir=opt("conformance_deviations"),
                    in_process=opt("conformance_in_process"),
                    memory_limit_mib=opt("conformance_memory_limit"),
                    allow_empty=opt("conformance_allow_empty"),
                )
            except UsageError as exc:
                raise pytest.UsageError(f"conformance: {exc}") from exc
        return self._plan

    def target(self, name: str) -> "TargetPlan":
        """The plan of the target named ``name``."""
        return self.plan().target(name)

    def report(self) -> "AuditReport":
        """A report object for failure texts (claim statements loaded once)."""
        from transformer_conformance.report import AuditReport, claim_statements

        if self._report is None:
            plan = self.plan()
            self._report = AuditReport(plan.config, [t.summary for t in plan.targets], [])
            self._report.statements = claim_statements()
        return self._report

    def run_check(self, name: str, check_id: str) -> "CheckResult":
        """Run one check on one target, with this process's earlier results of that target as the
        dependencies' outcomes (see the module docstring)."""
        target, plan = self.target(name), self.plan()
        done = self.results.setdefault(name, {})
        spec = self.registry.get(check_id)
        (result,) = plan.run(target, [spec], prior=done)
        done[check_id] = result
        return result

    def close(self) -> None:
        """End the targets' workers (at the end of the session)."""
        if self._plan is not None:
            self._plan.stop()


class ConformanceFailure(Exception):
    """A failed check; its text is the report's failure description."""


class ConformanceItem(pytest.Item):
    """One (target, check) pair, or a target's deviation-file item when ``check_id`` is None."""

    def __init__(self, *, target: str, check_id: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.check_id = check_id

    @property
    def base_id(self) -> str:
        """The node ID (``conformance::TARGET::CHECK``), whatever a plugin appends to it."""
        return f"{ROOT}::{self.target}::{self.name}"

    def runtest(self) -> None:
        """Run this item's check (or judge the target's deviation entries) and map the result."""
        from transformer_conformance.api import empty_reason, target_stale
        from transformer_conformance.runner import BLOCKED, ERROR, FAIL, KNOWN_DEVIATION, NOT_APPLICABLE

        state = self.config.stash[_STATE]
        if self.check_id is None:
            done = list(state.results.get(self.target, {}).values())
            plan, target = state.plan(), state.target(self.target)
            problems = [
                f"stale deviation {s['entry']} ({s['source']} #{s['index']}): {s['why']}"
                for s in target_stale(plan, target, done)
            ]
            why = empty_reason(target, done) if done else None
            if why is not None and target.summary.gated and not plan.allow_empty:
                problems.insert(
                    0,
                    f"EMPTY target {self.target}: {why}; nothing was verified "
                    "(--conformance-allow-empty accepts it)",
                )
            if problems:
                raise ConformanceFailure("\n".join(problems))
            return
        result = state.run_check(self.target, self.check_id)
        if result.status in (FAIL, ERROR):
            raise ConformanceFailure(state.report().failure_text(result))
        if result.status in (NOT_APPLICABLE, BLOCKED):
            # reported at the item (``conformance``), not at this line of the plugin
            raise pytest.skip.Exception(f"{result.status}: {result.message}", _use_item_location=True)
        if result.status == KNOWN_DEVIATION:
            d = result.deviation or {}
            pytest.xfail(f"known deviation ({d.get('category')}): {d.get('reason', '')} ({result.message})")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        """The failure text (claims, inputs, errors, repro) instead of a traceback."""
        if isinstance(excinfo.value, ConformanceFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[str, int | None, str]:
        """Location shown by pytest (line 0: skip reports need one). The domain (a failure's headline)
        is ``TARGET :: CHECK``, not a suffix of the node ID: the terminal would turn the dots of a
        check ID in such a suffix into ``::``."""
        return ROOT, 0, f"{self.target} :: {self.name}"


class ConformanceCollector(pytest.Collector):
    """The ``conformance`` node: one ``TargetCollector`` per audited target."""

    def __init__(self, *, targets: list[str], registry: "Registry", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.targets = targets
        self.registry = registry

    def collect(self) -> Iterator[pytest.Collector]:
        """One node per target: ``conformance::TARGET``."""
        for name in self.targets:
            yield TargetCollector.from_parent(self, name=name, registry=self.registry)

    def reportinfo(self) -> tuple[str, int | None, str]:
        """Location shown by pytest."""
        return ROOT, 0, ""


class TargetCollector(pytest.Collector):
    """``conformance::TARGET``: one item per check (dependencies first), then ``deviations``. It is
    the scope that ``--dist loadscope`` keeps on one xdist worker."""

    def __init__(self, *, registry: "Registry", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registry = registry

    def collect(self) -> Iterator[pytest.Item]:
        """Items ``CHECK`` with their markers, and ``deviations``."""
        from transformer_conformance.runner import order_checks

        target = self.name
        for spec in order_checks(self.registry.all()):
            item = ConformanceItem.from_parent(self, name=spec.id, target=target, check_id=spec.id)
            item.add_marker(pytest.mark.conformance)
            for claim in spec.claims:
                item.add_marker(pytest.mark.claim(claim, id=claim))
            for cap in sorted(c.value for c in spec.needs):
                item.add_marker(pytest.mark.capability(name=cap))
            item.add_marker(pytest.mark.xdist_group(target))
            item.extra_keyword_matches.update(spec.claims)
            yield item
        item = ConformanceItem.from_parent(self, name="deviations", target=target, check_id=None)
        item.add_marker(pytest.mark.conformance)
        item.add_marker(pytest.mark.xdist_group(target))
        yield item

    def reportinfo(self) -> tuple[str, int | None, str]:
        """Location shown by pytest."""
        return ROOT, 0, ""


def _is_conformance_arg(arg: str) -> bool:
    return (arg == ROOT and not os.path.exists(arg)) or arg.startswith(f"{ROOT}::")


def pytest_collection(session: pytest.Session) -> None:
    """Resolve ``--conformance-*`` options before collecting (bad ones are usage errors) and take
    ``conformance::...`` node-ID arguments out of the file arguments (they name our items)."""
    config = session.config
    impl = config.getoption("conformance_impl")
    if not impl:
        return
    from transformer_conformance.api import (
        UsageError,
        check_timeout,
        load_registry,
        resolve_device,
        target_names,
    )
    from transformer_conformance.registry import load_builtin_checks
    from transformer_conformance.targets import TargetError, add_import_paths

    impls = [s.strip() for s in str(impl).split(",") if s.strip()]
    checks_from = config.getoption("conformance_checks_from")
    try:
        resolve_device(config.getoption("conformance_device"))
        check_timeout(config.getoption("conformance_timeout"))
        add_import_paths()
        registry = load_registry(checks_from) if checks_from else load_builtin_checks()
        names = target_names(impls, config.getoption("conformance_in_process"))
    except (UsageError, TargetError) as exc:
        raise pytest.UsageError(f"conformance: {exc}") from exc
    state = _AuditState(config, impls, registry, names)
    state.selected = [a.split("@")[0] for a in config.args if _is_conformance_arg(a)]
    if state.selected:
        config.args[:] = [a for a in config.args if not _is_conformance_arg(a)]
    config.stash[_STATE] = state


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the targets' workers of this process."""
    state = session.config.stash.get(_STATE, None)
    if state is not None:
        state.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``conformance::...`` node-ID arguments, keep only the conformance items they name."""
    state = config.stash.get(_STATE, None)
    if state is None or not state.selected:
        return

    def named(item: ConformanceItem) -> bool:
        return any(
            item.base_id == s or item.base_id.startswith(s + "::") or s == ROOT for s in state.selected
        )

    drop = [i for i in items if isinstance(i, ConformanceItem) and not named(i)]
    if drop:
        items[:] = [i for i in items if not (isinstance(i, ConformanceItem) and not named(i))]
        config.hook.pytest_deselected(items=drop)


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
                name=ROOT,
                nodeid=ROOT,
                targets=state.names,
                registry=state.registry,
            )
        )
    return report
