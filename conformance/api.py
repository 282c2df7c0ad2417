"""Library API: ``run_audit`` runs checks against targets and writes the reports.

Used by the CLI (``python -m transformer_conformance run``) and the pytest plugin. Bad arguments raise
``UsageError`` (the CLI turns it into exit code 2) before any check runs.
"""

import fnmatch
import inspect
import json
import math
import os
import pickle
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from transformer_conformance.adapter import Adapter
from transformer_conformance.context import CI_SEED, PROFILES, CheckFailure
from transformer_conformance.deviations import DEFAULT_DIR, Deviation, DeviationFileError, load_for_target
from transformer_conformance.reference.tolerance import TOLERANCE_VERSION
from transformer_conformance.registry import DEFAULT_REGISTRY, CheckSpec, Registry, load_builtin_checks
from transformer_conformance.report import AuditReport, TargetSummary, claim_statements
from transformer_conformance.runner import (
    ERROR,
    FAIL,
    KNOWN_DEVIATION,
    PASS,
    CheckResult,
    RunSettings,
    build_failure_results,
    dtype_name,
    run_target,
    stale_deviations,
)
from transformer_conformance.targets import (
    BUILTIN_TARGETS,
    TargetError,
    add_import_paths,
    import_object,
    import_root,
    resolve_target,
)

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


class UsageError(ValueError):
    """A bad request (unknown target, check or dtype; CUDA asked for but absent, ...)."""


@dataclass
class ReportPaths:
    """Where to write reports; ``jsonl`` is the streamed partial file (defaults next to ``json``)."""

    json: Path | None = None
    junit: Path | None = None
    markdown: Path | None = None
    jsonl: Path | None = None
    html: Path | None = None  # the self-contained HTML page (conformance/html.py)

    def absolute(self) -> "ReportPaths":
        """The same paths made absolute against the current directory (done before any target runs,
        so a target that changes directory cannot move the reports)."""
        return ReportPaths(*(None if p is None else Path(os.path.abspath(p)) for p in (
            self.json, self.junit, self.markdown, self.jsonl, self.html)))

    def all(self) -> list[Path]:
        """Every file this run will write."""
        stream = self.stream_path()
        return [p for p in (self.json, self.junit, self.markdown, self.html, stream) if p is not None]

    def stream_path(self) -> Path | None:
        """The JSONL file results are streamed to while the run goes on."""
        if self.jsonl is not None:
            return self.jsonl
        if self.json is not None:
            return self.json.with_name(self.json.stem + ".partial.jsonl")
        return None


#: Environment variable: the run seed when none is given (``--seed``), in every profile.
SEED_ENV = "TRANSFORMER_CONFORMANCE_SEED"


def default_seed(derandomized: bool) -> int:
    """The run seed when none is given: ``$TRANSFORMER_CONFORMANCE_SEED`` when set (a CI job pins
    every profile with it; the test suite sets it under ``CI``), else ``CI_SEED`` for a derandomized
    profile (``ci``), else a fresh random seed (printed in the report and every repro command)."""
    text = os.environ.get(SEED_ENV, "").strip()
    if text:
        try:
            value = int(text, 0)
        except ValueError:
            raise UsageError(f"${SEED_ENV}: expected a non-negative integer, got {text!r}") from None
        if value < 0:
            raise UsageError(f"${SEED_ENV}: expected a non-negative integer, got {value}")
        return value
    return CI_SEED if derandomized else random.SystemRandom().randrange(2**31)


def resolve_device(name: str) -> torch.device:
    """``cpu`` | ``cuda[:N]`` | ``auto`` -> a device; CUDA requested without CUDA is a UsageError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UsageError(f"--device: expected cpu, cuda or auto, got {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda: CUDA is not available on this machine (torch "
            f"{torch.__version__}, cuda build {torch.version.cuda}); use --device cpu or auto"
        )
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device: expected cpu, cuda or auto, got {name!r}")
    return device


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """``float32`` (default), ``float64``, ``float16`` or ``bfloat16``."""
    if isinstance(name, torch.dtype):
        if name in DTYPES.values():
            return name
        raise UsageError(f"--dtype: expected one of {sorted(DTYPES)}, got {name}")
    if name not in DTYPES:
        raise UsageError(f"--dtype: expected one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def _split(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()]


def select_checks(
    registry: Registry, claims: str | Sequence[str] | None = None, check: str | Sequence[str] | None = None
) -> list[CheckSpec]:
    """Checks whose ID is in ``check`` and that realise a claim matching a ``claims`` pattern."""
    specs = registry.all()
    wanted = _split(check)
    unknown = [c for c in wanted if c not in registry]
    if unknown:
        raise UsageError(
            f"--check: unknown check {', '.join(map(repr, unknown))} "
            "(see `python -m transformer_conformance list`)"
        )
    if wanted:
        specs = [s for s in specs if s.id in wanted]
    patterns = _split(claims)
    if patterns:
        specs = [s for s in specs if any(fnmatch.fnmatchcase(c, p) for c in s.claims for p in patterns)]
        if not specs:
            raise UsageError(f"--claims {','.join(patterns)}: matches no claim of any selected check")
    return specs


def load_registry(spec: str) -> Registry:
    """``package.module:attribute`` naming a ``Registry`` (for suites with their own checks)."""
    try:
        obj: Any = import_object(spec)
    except TargetError as exc:
        raise UsageError(f"--checks-from: {exc}") from exc
    if not isinstance(obj, Registry):
        raise UsageError(
            f"--checks-from {spec!r}: expected a conformance.registry.Registry, got {type(obj).__name__}"
        )
    return obj


def registry_spec(registry: Registry) -> str | None:
    """The ``package.module:attribute`` naming ``registry`` among the imported modules, if any
    (so a repro command can carry ``--checks-from``); None for the built-in registry."""
    if registry is DEFAULT_REGISTRY:  # (compared without importing the built-in checks)
        return None
    for mod_name, module in list(sys.modules.items()):
        if mod_name == "__main__" or module is None:
            continue
        for attr, value in list(getattr(module, "__dict__", {}).items()):
            if value is registry and not attr.startswith("_"):
                return f"{mod_name}:{attr}"
    return None


def cli_path(path: Path) -> str:
    """A path as a command line should show it: relative to the cwd when inside it."""
    absolute = path.resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(absolute)


def repro_options(
    checks_from: str | None,
    deviations_dir: Path | None,
    timeout: float | None,
    import_paths: Sequence[Path] = (),
    in_process: bool = False,
) -> tuple[str, ...]:
    """The options besides impl/check/seed/device/dtype/profile that change what a rerun does;
    ``import_paths`` (where an adapter or registry was imported from) become absolute ``--path DIR``
    options, except the current directory (every run imports from it; the printed interpreter is
    relative to it too), so an out-of-tree adapter is found as printed."""
    extra: list[str] = []
    for path in dict.fromkeys(p.resolve() for p in import_paths):
        if path != Path.cwd().resolve():
            extra += ["--path", str(path)]
    if checks_from:
        extra += ["--checks-from", checks_from]
    if deviations_dir is not None and deviations_dir.resolve() != DEFAULT_DIR.resolve():
        extra += ["--deviations", cli_path(deviations_dir)]
    if timeout is not None:
        extra += ["--timeout", f"{timeout:g}"]
    if in_process:
        extra += ["--in-process"]
    return tuple(extra)


def parse_example(example: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """``--example``: the JSON ``{"search": n, "example": {...}}`` of a report's counterexample
    (its ``replay`` field), which the check then runs alone (``conformance/search.py``)."""
    if example is None or isinstance(example, dict):
        return example
    try:
        value = json.loads(example)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--example: not JSON ({exc})") from exc
    if not isinstance(value, dict) or not isinstance(value.get("example"), dict):
        raise UsageError('--example: expected {"search": N, "example": {...}} (a counterexample\'s replay)')
    return value


class _Progress:
    """Progress of a run on stderr: a tqdm bar (counts, rate, ETA) on a terminal, one line per
    finished target otherwise (CI logs); a given stream gets one line per check instead."""

    def __init__(self, progress: bool | TextIO | None, total: int, targets: int) -> None:
        self.total, self.targets, self.done, self.targets_done = total, targets, 0, 0
        self.lines: TextIO | None = None  # per-check lines
        self.per_target: TextIO | None = None
        self.bar: Any = None
        if progress is False:
            return
        if progress is None or progress is True:
            if sys.stderr.isatty():
                from tqdm import tqdm  # type: ignore[import-untyped]  # (no stubs shipped)

                self.bar = tqdm(total=total, unit="check", file=sys.stderr, dynamic_ncols=True, leave=True)
            else:
                self.per_target = sys.stderr
        else:
            self.lines = progress

    def result(self, result: CheckResult) -> None:
        """One check finished."""
        self.done += 1
        if self.bar is not None:
            self.bar.set_description_str(result.target, refresh=False)
            self.bar.update(1)
        if self.lines is not None:
            extra = f" [{result.failure_kind}]" if result.failure_kind else ""
            self.lines.write(
                f"[{self.done:>4}/{self.total}] {result.target} :: {result.check} ... {result.status}{extra} "
                f"({result.duration_s:.2f}s)\n"
            )
            self.lines.flush()

    def target(self, name: str, results: Sequence[CheckResult]) -> None:
        """Every check of one target finished."""
        self.targets_done += 1
        if self.per_target is None:
            return
        counts: dict[str, int] = {}
        for r in results:
            counts[r.status] = counts.get(r.status, 0) + 1
        text = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no checks"
        seconds = sum(r.duration_s for r in results)
        self.per_target.write(
            f"[{self.targets_done}/{self.targets} targets, {self.done}/{self.total} checks] {name}: {text} "
            f"({seconds:.1f}s)\n"
        )
        self.per_target.flush()

    def close(self) -> None:
        """Finish the bar (if any)."""
        if self.bar is not None:
            self.bar.close()


def _source_file(adapter: Adapter) -> str | None:
    try:
        return inspect.getsourcefile(type(adapter))
    except TypeError:
        return None

def check_writable(paths: Sequence[Path]) -> None:
    """UsageError unless every report file can be created (its folder is made when missing)."""
    for path in paths:
        if path.is_dir():
            raise UsageError(f"report path {path} is a directory, expected a file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            existed = path.exists()
            with path.open("a", encoding="utf-8"):
                pass
            if not existed:
                path.unlink()
        except OSError as exc:
            raise UsageError(f"report path {path} is not writable: {exc}") from exc


def check_timeout(timeout: float | None) -> None:
    """UsageError unless ``timeout`` is None or a finite positive number of seconds."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise UsageError(f"--timeout: expected a number of seconds, got {timeout!r}")
    if not math.isfinite(timeout) or timeout <= 0:
        raise UsageError(f"--timeout: expected a finite positive number of seconds, got {timeout}")


def deviation_name(impl: str, adapter_name: str, given_as_string: bool, explicit_dir: bool) -> str | None:
    """Whose deviation file applies: the target named on the command line. A built-in name is its
    own key; a ``package.module:factory`` target uses its adapter's name, except a built-in target's
    name, which it cannot borrow from the built-in deviation files (None: no file)."""
    if impl in BUILTIN_TARGETS:
        return impl
    if given_as_string and adapter_name in BUILTIN_TARGETS and not explicit_dir:
        return None
    return adapter_name


def target_names(impls: Sequence[str], in_process: bool = False) -> list[str]:
    """The report names of ``impls`` without running any target code here: a built-in target is its
    name; a ``package.module:factory`` target is built in a worker process (``in_process``: here) to
    read its adapter's name. UsageError for an unknown or broken target."""
    names = []
    for impl in impls:
        if impl in BUILTIN_TARGETS:
            names.append(impl)
            continue
        if in_process or ":" not in impl:
            try:
                names.append(resolve_target(impl).name)
            except TargetError as exc:
                raise UsageError(f"--impl: {exc}") from exc
            continue
        _, adapter, session, failure = _start_session(impl, PROFILES["ci"].time_limit_s, None)
        session.stop()
        names.append(impl if failure is not None else adapter.name)
    return names


def _start_session(
    entry: str | Adapter, limit: float, memory_limit_mib: float | None
) -> tuple[str, Any, Any, Any]:
    """(impl, adapter proxy or label, session, build failure) for one isolated target."""
    import transformer_conformance.isolation as isolation  # (via sys.modules, not a stale package attribute)

    memory = int(memory_limit_mib * 2**20) if memory_limit_mib else None
    if isinstance(entry, Adapter):
        _check_picklable(entry)
        session = isolation.TargetSession(entry.name, adapter=entry, memory_limit=memory)
        impl = entry.name
    else:
        session = isolation.TargetSession(entry, impl=entry, memory_limit=memory)
        impl = entry
    try:
        return impl, session.start(limit), session, None
    except isolation.WorkerUsageError as exc:
        raise UsageError(f"--impl: {exc}") from exc
    except CheckFailure as failure:
        return impl, impl, session, failure


def _check_picklable(entry: Adapter) -> None:
    try:
        pickle.dumps(entry)
    except Exception as exc:
        raise UsageError(
            f"--impl: the Adapter instance {entry.name!r} cannot be sent to its worker process "
            f"({type(exc).__name__}: {exc}); define its class at module level, pass a "
            "'package.module:factory' string, or use in_process=True"
        ) from exc


@dataclass
class TargetPlan:
    """One target of an audit: how to build it, its run settings, deviations and report summary.

    Isolated (``session`` set once started), the target is built in its worker on first use
    (``start``) and that worker serves every later check (restarted by the runner after a fatal
    failure); in-process, ``adapter`` is the target itself from the start."""

    impl: str
    entry: str | Adapter
    settings: RunSettings
    deviations: list[Deviation]
    summary: TargetSummary
    adapter: Any = None  # the Adapter (in-process) or its isolation.RemoteAdapter, once built
    session: Any = None  # the isolation.TargetSession of an isolated target, once started
    failure: CheckFailure | None = None  # why the target could not be built in its worker
    memory_limit_mib: float | None = None

    @property
    def name(self) -> str:
        """The target's report name."""
        return self.summary.name

    def start(self) -> None:
        """Build the target (once; in its worker unless it was built in this process)."""
        if self.adapter is not None or self.failure is not None:
            return
        _, adapter, session, failure = _start_session(
            self.entry, self.settings.time_limit_s, self.memory_limit_mib
        )
        self.session, self.failure = session, failure
        self.adapter = adapter if failure is None else None
        self.describe()

    def describe(self) -> None:
        """Fill the summary from the built adapter (or the build failure)."""
        s = self.summary
        if self.failure is not None:
            s.problems = [f"could not be built: {self.failure.message}"]
            return
        adapter = self.adapter
        s.capabilities = sorted(c.value for c in adapter.capabilities)
        s.conventions = {
            k: (v if not isinstance(v, tuple) else [str(x) for x in v])
            for k, v in asdict(adapter.conventions).items()
        }
        s.problems = adapter.declaration_problems() + s.problems
        s.source = getattr(adapter, "source", None) if self.session is not None else _source_file(adapter)

    def stop(self) -> None:
        """End the target's worker (its threads and child processes end with it)."""
        if self.session is not None:
            self.session.stop()


@dataclass
class AuditPlan:
    """Everything resolved before a check runs (bad arguments are usage errors by then)."""

    config: dict[str, Any]
    targets: list[TargetPlan]
    specs: list[CheckSpec]  # the selected checks
    all_specs: list[CheckSpec]  # every check of the registry (deviation entries are judged against it)
    claims: list[str]  # --claims patterns
    paths: ReportPaths = field(default_factory=ReportPaths)  # absolute report paths, checked writable
    allow_empty: bool = False

    def target(self, name: str) -> TargetPlan:
        """The plan of the target named ``name``."""
        return next(t for t in self.targets if t.name == name)

    def run(
        self,
        target: TargetPlan,
        specs: Sequence[CheckSpec],
        on_result: Callable[[CheckResult], None] | None = None,
        prior: dict[str, CheckResult] | None = None,
    ) -> list[CheckResult]:
        """Run ``specs`` on ``target`` (built first when needed) with ``prior`` results of it
        standing for dependencies run before (see ``runner.run_target``)."""
        target.start()
        if target.failure is not None:
            mine = build_failure_results(target.name, specs, target.settings, target.failure)
            for r in mine:
                if on_result is not None:
                    on_result(r)
            return mine
        return run_target(
            target.adapter,
            specs,
            target.settings,
            target.deviations,
            on_result=on_result,
            known_ids={s.id for s in self.all_specs},
            prior=prior,
            session=target.session,
        )

    def stop(self) -> None:
        """End every target's worker."""
        for target in self.targets:
            target.stop()


def empty_reason(target: TargetPlan, results: Sequence[CheckResult]) -> str | None:
    """Why ``target`` is EMPTY (no check among ``results`` applied to it: nothing was verified), or
    None when one did."""
    if target.failure is not None or any(r.status in (PASS, FAIL, ERROR, KNOWN_DEVIATION) for r in results):
        return None
    if not target.summary.capabilities:
        return "declares no capability"
    return "no selected check applied to it (all not-applicable or blocked)"


def plan_audit(
    targets: Sequence[str | Adapter] | str,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    profile: str = "ci",
    seed: int | None = None,
    claims: str | Sequence[str] | None = None,
    check: str | Sequence[str] | None = None,
    timeout: float | None = None,
    report_paths: ReportPaths | None = None,
    gate: str | Sequence[str] | None = None,
    save_inputs: str | Path | None = None,
    registry: Registry | None = None,
    deviations_dir: str | Path | None = None,
    checks_from: str | None = None,
    import_paths: Sequence[str | Path] = (),
    in_process: bool = False,
    memory_limit_mib: float | None = None,
    allow_empty: bool = False,
    shrink: bool = True,
    example: str | dict[str, Any] | None = None,
) -> AuditPlan:
    """Resolve targets, checks, deviations, report paths and settings as ``run_audit`` does,
    running no check and no target code in this process (unless ``in_process``): a
    ``package.module:factory`` target is built in its worker here, to learn its name (that worker is
    kept for its checks); a built-in target or ``Adapter`` instance is started on first use. The
    pytest plugin runs the plan one check per item; ``AuditPlan.stop`` ends the workers."""
    if profile not in PROFILES:
        raise UsageError(f"--profile: expected one of {sorted(PROFILES)}, got {profile!r}")
    prof = PROFILES[profile]
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine")
    dt = resolve_dtype(dtype)
    check_timeout(timeout)
    limit = timeout if timeout is not None else prof.time_limit_s
    if seed is None:
        seed = default_seed(prof.derandomized)
    paths = (report_paths or ReportPaths()).absolute()
    check_writable(paths.all())
    save_dir = Path(os.path.abspath(save_inputs)) if save_inputs else None
    deviation_dir = Path(os.path.abspath(deviations_dir)) if deviations_dir is not None else None
    if memory_limit_mib is not None:
        if not math.isfinite(memory_limit_mib) or memory_limit_mib <= 0:
            raise UsageError(f"--memory-limit: expected a positive number of MiB, got {memory_limit_mib}")
        if in_process:
            raise UsageError("--memory-limit needs isolated targets; it cannot be combined with --in-process")
    entries = _split(targets) if isinstance(targets, str) else list(targets)
    if not in_process:
        from transformer_conformance.forkserver import prestart

        # torch imports in the fork server while the checks load here
        prestart(e for e in entries if isinstance(e, str))

    # Targets first: an unknown target is a usage error before anything runs.
    add_import_paths(import_paths)
    if not entries:
        raise UsageError("--impl: expected at least one target")
    if registry is not None:
        reg = registry
        checks_from = checks_from or registry_spec(registry)
    elif checks_from:
        reg = load_registry(checks_from)
    else:
        reg = load_builtin_checks()
    specs = select_checks(reg, claims, check)
    imported = [e for e in entries if isinstance(e, str) and ":" in e]
    imported += [checks_from] if checks_from else []
    roots = [r for r in map(import_root, imported) if r is not None]
    options = repro_options(checks_from, deviation_dir, timeout, roots, in_process)
    options += () if shrink else ("--no-shrink",)
    replay = parse_example(example)

    plans: list[TargetPlan] = []
    try:
        for entry in entries:
            impl = entry if isinstance(entry, str) else entry.name
            settings = RunSettings(
                device=dev, dtype=dt, profile=prof, seed=seed, time_limit_s=limit, impl=impl,
                save_inputs=save_dir, repro_options=options, shrink=shrink, replay=replay,
            )
            summary = TargetSummary(name=impl, impl=impl, capabilities=[], conventions={}, gated=False)
            plan = TargetPlan(impl, entry, settings, [], summary, memory_limit_mib=memory_limit_mib)
            plans.append(plan)
            if in_process:
                try:
                    plan.adapter = entry if isinstance(entry, Adapter) else resolve_target(entry)
                except TargetError as exc:
                    raise UsageError(f"--impl: {exc}") from exc
                summary.name = plan.adapter.name
            elif isinstance(entry, Adapter):
                _check_picklable(entry)
            elif entry not in BUILTIN_TARGETS:
                plan.start()  # in its worker: its name is its adapter's (its label if it failed to build)
                if plan.adapter is not None:
                    summary.name = plan.adapter.name
        names = [t.name for t in plans]
        if len(set(names)) != len(names):
            raise UsageError(f"--impl: target names must be unique, got {names}")
        gated_names = set(_split(gate)) if gate is not None else set(names)
        unknown_gate = gated_names - set(names) - {t.impl for t in plans}
        if unknown_gate:
            raise UsageError(f"--gate: {sorted(unknown_gate)} not among the audited targets {names}")
        for plan, entry in zip(plans, entries):
            plan.summary.gated = plan.name in gated_names or plan.impl in gated_names
            key = deviation_name(plan.impl, plan.name, isinstance(entry, str), deviation_dir is not None)
            if key is None:
                plan.summary.problems.append(
                    f"reports the name of built-in target {plan.name!r}; the built-in deviation file of that "
                    "target does not apply to it"
                )
            try:
                plan.deviations = load_for_target(key, deviation_dir) if key is not None else []
            except DeviationFileError as exc:
                raise UsageError(str(exc)) from exc
            if plan.adapter is not None or plan.failure is not None:
                plan.describe()
    except BaseException:
        for plan in plans:
            plan.stop()
        raise

    config = {
        "device": str(dev),
        "dtype": dtype_name(dt),
        "profile": prof.name,
        "seed": seed,
        "examples": prof.examples,
        "timeout_s": limit,
        "claims": claims,
        "check": check,
        "checks_from": checks_from,
        "targets": [t.impl for t in plans],
        "isolation": "in-process" if in_process else "worker process per target",
        "memory_limit_mib": memory_limit_mib,
        "allow_empty": allow_empty,
        "shrink": shrink,
        "shrink_budget": {"replays": prof.shrink_calls, "seconds": prof.shrink_s},
        "example": replay,
        "tolerance_version": TOLERANCE_VERSION,
        "torch": torch.__version__,
    }
    return AuditPlan(config, plans, specs, reg.all(), _split(claims), paths, allow_empty)


def target_stale(plan: AuditPlan, target: TargetPlan, results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    """The stale deviation entries of ``target`` given its ``results`` (report records)."""
    settings = target.settings
    found = stale_deviations(
        target.deviations, results, plan.all_specs, settings.device.type, dtype_name(settings.dtype)
    )
    return [
        {
            "target": target.name,
            "entry": entry.describe(),
            "source": entry.source,
            "index": entry.index,
            "why": why,
        }
        for entry, why in found
    ]


def run_audit(
    targets: Sequence[str | Adapter] | str,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    profile: str = "ci",
    seed: int | None = None,
    claims: str | Sequence[str] | None = None,
    check: str | Sequence[str] | None = None,
    timeout: float | None = None,
    report_paths: ReportPaths | None = None,
    gate: str | Sequence[str] | None = None,
    save_inputs: str | Path | None = None,
    registry: Registry | None = None,
    deviations_dir: str | Path | None = None,
    progress: bool | TextIO | None = None,
    checks_from: str | None = None,
    import_paths: Sequence[str | Path] = (),
    in_process: bool = False,
    memory_limit_mib: float | None = None,
    allow_empty: bool = False,
    shrink: bool = True,
    example: str | dict[str, Any] | None = None,
) -> AuditReport:
    """Audit ``targets`` (built-in names, ``package.module:factory`` strings or ``Adapter``s):
    ``plan_audit``, then every selected check of every target, reports written in any case.

    Each target runs in its own worker process (``transformer_conformance.isolation``): nothing it
    does (exit, crash, hang, patch the oracle, modify its inputs, start threads, change directory) can
    change the verdict or the reports. ``in_process=True`` runs targets in this process instead (for
    debugging with pdb; unsafe for gating). An ``Adapter`` instance is pickled to its worker (its class
    must be importable). ``memory_limit_mib`` caps the address space each worker may add.

    ``registry`` (a ``Registry``) or ``checks_from`` (``package.module:attribute`` naming one)
    REPLACES the built-in checks; neither given: the built-in checks. Failures carry a repro
    command naming this interpreter and every option that changes what runs. ``import_paths``
    (``--path``) and the current working directory are put first on ``sys.path`` before
    ``package.module`` targets are imported.

    Claims: every claim realised by a selected check. Returns the report; its ``exit_code`` is 0
    when every gated target passed all applicable checks, no deviation entry is stale and (unless
    ``allow_empty``) every gated target had a check that applied.
    """
    started = time.perf_counter()
    plan = plan_audit(
        targets,
        device=device,
        dtype=dtype,
        profile=profile,
        seed=seed,
        claims=claims,
        check=check,
        timeout=timeout,
        report_paths=report_paths,
        gate=gate,
        save_inputs=save_inputs,
        registry=registry,
        deviations_dir=deviations_dir,
        checks_from=checks_from,
        import_paths=import_paths,
        in_process=in_process,
        memory_limit_mib=memory_limit_mib,
        allow_empty=allow_empty,
        shrink=shrink,
        example=example,
    )
    try:
        return _execute(plan, progress, started)
    finally:
        plan.stop()


def _execute(plan: AuditPlan, progress: bool | TextIO | None, started: float) -> AuditReport:
    """Run ``plan`` target by target, streaming records, and write its reports in any case."""
    config, specs, paths = plan.config, plan.specs, plan.paths
    stream_path = paths.stream_path()
    stream = stream_path.open("w", encoding="utf-8") if stream_path is not None else None
    bar = _Progress(progress, len(specs) * len(plan.targets), len(plan.targets))

    def emit(record: dict[str, Any]) -> None:
        if stream is not None:
            stream.write(json.dumps(record) + "\n")
            stream.flush()

    def on_result(result: CheckResult) -> None:
        bar.result(result)
        emit({"event": "result", **result.to_json()})

    results: list[CheckResult] = []
    summaries: list[TargetSummary] = []
    stale: list[dict[str, Any]] = []
    empty: list[str] = []
    report = AuditReport(
        config=config,
        targets=summaries,
        results=results,
        stale=stale,
        statements=claim_statements(),
        claim_filter=plan.claims,
        allow_empty=plan.allow_empty,
        empty=empty,
    )
    try:
        emit({"event": "start", "config": config})
        for target in plan.targets:
            summaries.append(target.summary)
            mine = plan.run(target, specs, on_result=on_result)
            target.stop()  # its threads and child processes end with it
            results.extend(mine)
            bar.target(target.name, mine)
            why = empty_reason(target, mine)
            if why is not None:
                target.summary.problems.append(f"EMPTY: {why}; nothing was verified")
                empty.append(target.name)
                emit({"event": "empty-target", "target": target.name, "why": why})
            for record in target_stale(plan, target, mine):
                stale.append(record)
                emit({"event": "stale-deviation", **record})
    finally:
        bar.close()
        report.duration_s = time.perf_counter() - started
        report.summarise()
        emit({"event": "end", "exit_code": report.exit_code, "duration_s": report.duration_s})
        if stream is not None:
            stream.close()
        if paths.json is not None:
            report.write_json(paths.json)
        if paths.junit is not None:
            report.write_junit(paths.junit)
        if paths.markdown is not None:
            report.write_markdown(paths.markdown)
        if paths.html is not None:
            from transformer_conformance.html import write_html

            write_html(report, paths.html)
    return report
