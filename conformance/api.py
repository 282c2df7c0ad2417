"""Library API: ``run_audit`` runs checks against targets and writes the reports.

Used by the CLI (``python -m transformer_conformance run``) and the pytest plugin. Bad arguments raise
``UsageError`` (the CLI turns it into exit code 2) before any check runs.
"""

import fnmatch
import json
import math
import os
import pickle
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from transformer_conformance.adapter import Adapter
from transformer_conformance.context import CI_SEED, PROFILES, CheckFailure
from transformer_conformance.deviations import DEFAULT_DIR, DeviationFileError, load_for_target
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
from transformer_conformance.targets import BUILTIN_TARGETS, TargetError, import_object, resolve_target

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
    checks_from: str | None, deviations_dir: Path | None, timeout: float | None, in_process: bool = False
) -> tuple[str, ...]:
    """The options besides impl/check/seed/device/dtype/profile that change what a rerun does."""
    extra: list[str] = []
    if checks_from:
        extra += ["--checks-from", checks_from]
    if deviations_dir is not None and deviations_dir.resolve() != DEFAULT_DIR.resolve():
        extra += ["--deviations", cli_path(deviations_dir)]
    if timeout is not None:
        extra += ["--timeout", f"{timeout:g}"]
    if in_process:
        extra += ["--in-process"]
    return tuple(extra)


def _progress_stream(progress: bool | TextIO | None) -> TextIO | None:
    if progress is None:
        return sys.stderr if sys.stderr.isatty() else None
    if progress is True:
        return sys.stderr
    if progress is False:
        return None
    return progress


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


def _summary(impl: str, adapter: Any, gated: bool, problems: list[str]) -> TargetSummary:
    return TargetSummary(
        name=adapter.name,
        impl=impl,
        capabilities=sorted(c.value for c in adapter.capabilities),
        conventions={
            k: (v if not isinstance(v, tuple) else [str(x) for x in v])
            for k, v in asdict(adapter.conventions).items()
        },
        gated=gated,
        problems=problems,
    )


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
    in_process: bool = False,
    memory_limit_mib: float | None = None,
    allow_empty: bool = False,
) -> AuditReport:
    """Audit ``targets`` (built-in names, ``package.module:factory`` strings or ``Adapter``s).

    Each target runs in its own worker process (``transformer_conformance.isolation``): nothing it
    does (exit, crash, hang, patch the oracle, modify its inputs, start threads, change directory) can
    change the verdict or the reports. ``in_process=True`` runs targets in this process instead (for
    debugging with pdb; unsafe for gating). An ``Adapter`` instance is pickled to its worker (its class
    must be importable). ``memory_limit_mib`` caps the address space each worker may add.

    ``registry`` (a ``Registry``) or ``checks_from`` (``package.module:attribute`` naming one)
    REPLACES the built-in checks; neither given: the built-in checks. Failures carry a repro
    command naming this interpreter and every option that changes what runs.

    Returns the report; its ``exit_code`` is 0 when every gated target passed all applicable checks,
    no deviation entry is stale and (unless ``allow_empty``) every gated target had a check that applied.
    """
    started = time.perf_counter()
    if profile not in PROFILES:
        raise UsageError(f"--profile: expected one of {sorted(PROFILES)}, got {profile!r}")
    prof = PROFILES[profile]
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine")
    dt = resolve_dtype(dtype)
    check_timeout(timeout)
    if memory_limit_mib is not None:
        if not math.isfinite(memory_limit_mib) or memory_limit_mib <= 0:
            raise UsageError(f"--memory-limit: expected a positive number of MiB, got {memory_limit_mib}")
        if in_process:
            raise UsageError("--memory-limit needs isolated targets; it cannot be combined with --in-process")
    limit = timeout if timeout is not None else prof.time_limit_s
    if seed is None:
        seed = CI_SEED if prof.derandomized else random.SystemRandom().randrange(2**31)
    paths = (report_paths or ReportPaths()).absolute()
    check_writable(paths.all())
    save_dir = Path(os.path.abspath(save_inputs)) if save_inputs else None
    deviation_dir = Path(os.path.abspath(deviations_dir)) if deviations_dir is not None else None
    if not in_process:
        from transformer_conformance.forkserver import prestart

        prestart()  # torch imports in the fork server while the checks load here

    entries = _split(targets) if isinstance(targets, str) else list(targets)
    if not entries:
        raise UsageError("--impl: expected at least one target")
    for entry in entries:  # names that are neither built-in nor module:factory: a usage error now
        if isinstance(entry, str) and entry not in BUILTIN_TARGETS and ":" not in entry:
            try:
                resolve_target(entry)
            except TargetError as exc:
                raise UsageError(f"--impl: {exc}") from exc

    if registry is not None:
        reg = registry
        checks_from = checks_from or registry_spec(registry)
    elif checks_from:
        reg = load_registry(checks_from)
    else:
        reg = load_builtin_checks()
    specs = select_checks(reg, claims, check)
    all_specs = reg.all()

    # Targets: built (in their workers) before any check runs; a target that cannot be imported or
    # is not an Adapter is a usage error, one whose factory fails fails every check.
    built: list[tuple[str, Any, Any, CheckFailure | None]] = []  # (impl, adapter | label, session, failure)
    try:
        for entry in entries:
            impl = entry if isinstance(entry, str) else entry.name
            if in_process:
                if isinstance(entry, Adapter):
                    built.append((impl, entry, None, None))
                    continue
                try:
                    built.append((impl, resolve_target(entry), None, None))
                except TargetError as exc:
                    raise UsageError(f"--impl: {exc}") from exc
                continue
            built.append(_start_session(entry, limit, memory_limit_mib))
        names = [a.name if f is None else a for _, a, _, f in built]
        if len(set(names)) != len(names):
            raise UsageError(f"--impl: target names must be unique, got {names}")
        gated_names = set(_split(gate)) if gate is not None else set(names)
        unknown_gate = gated_names - set(names) - {impl for impl, *_ in built}
        if unknown_gate:
            raise UsageError(f"--gate: {sorted(unknown_gate)} not among the audited targets {names}")
        deviations: dict[str, list[Any]] = {}
        dev_problems: dict[str, list[str]] = {}
        for (impl, adapter, _session, failure), entry in zip(built, entries):
            name = adapter.name if failure is None else adapter
            key = deviation_name(impl, name, isinstance(entry, str), deviation_dir is not None)
            dev_problems[name] = []
            if key is None:
                dev_problems[name].append(
                    f"reports the name of built-in target {name!r}; the built-in deviation file of that "
                    "target does not apply to it"
                )
            try:
                deviations[name] = load_for_target(key, deviation_dir) if key is not None else []
            except DeviationFileError as exc:
                raise UsageError(str(exc)) from exc
        return _audit(
            built, specs, all_specs, reg_info=(checks_from, deviation_dir, timeout), paths=paths,
            gated_names=gated_names, deviations=deviations, dev_problems=dev_problems, dev=dev, dt=dt,
            prof=prof, seed=seed, limit=limit, save_dir=save_dir, progress=progress, claims=claims,
            check=check, started=started, in_process=in_process, allow_empty=allow_empty,
            memory_limit_mib=memory_limit_mib,
        )
    finally:
        for _impl, _adapter, session, _failure in built:
            if session is not None:
                session.stop()


def _start_session(
    entry: str | Adapter, limit: float, memory_limit_mib: float | None
) -> tuple[str, Any, Any, Any]:
    """(impl, adapter proxy or label, session, build failure) for one isolated target."""
    from transformer_conformance import isolation

    memory = int(memory_limit_mib * 2**20) if memory_limit_mib else None
    if isinstance(entry, Adapter):
        try:
            pickle.dumps(entry)
        except Exception as exc:
            raise UsageError(
                f"--impl: the Adapter instance {entry.name!r} cannot be sent to its worker process "
                f"({type(exc).__name__}: {exc}); define its class at module level, pass a "
                "'package.module:factory' string, or use in_process=True"
            ) from exc
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


def _audit(
    built: list[tuple[str, Any, Any, Any]],
    specs: list[CheckSpec],
    all_specs: list[CheckSpec],
    *,
    reg_info: tuple[str | None, Path | None, float | None],
    paths: ReportPaths,
    gated_names: set[str],
    deviations: dict[str, list[Any]],
    dev_problems: dict[str, list[str]],
    dev: torch.device,
    dt: torch.dtype,
    prof: Any,
    seed: int,
    limit: float,
    save_dir: Path | None,
    progress: bool | TextIO | None,
    claims: str | Sequence[str] | None,
    check: str | Sequence[str] | None,
    started: float,
    in_process: bool,
    allow_empty: bool,
    memory_limit_mib: float | None,
) -> AuditReport:
    checks_from, deviation_dir, timeout = reg_info
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
        "targets": [impl for impl, *_ in built],
        "isolation": "in-process" if in_process else "worker process per target",
        "memory_limit_mib": memory_limit_mib,
        "allow_empty": allow_empty,
        "tolerance_version": TOLERANCE_VERSION,
        "torch": torch.__version__,
    }
    stream_path = paths.stream_path()
    stream = stream_path.open("w", encoding="utf-8") if stream_path is not None else None
    out = _progress_stream(progress)
    total = len(specs) * len(built)
    done = 0

    def emit(record: dict[str, Any]) -> None:
        if stream is not None:
            stream.write(json.dumps(record, default=str) + "\n")
            stream.flush()

    def on_result(result: CheckResult) -> None:
        nonlocal done
        done += 1
        emit({"event": "result", **result.to_json()})
        if out is not None:
            extra = f" [{result.failure_kind}]" if result.failure_kind else ""
            out.write(
                f"[{done:>4}/{total}] {result.target} :: {result.check} ... {result.status}{extra} "
                f"({result.duration_s:.2f}s)\n"
            )
            out.flush()

    results: list[CheckResult] = []
    summaries: list[TargetSummary] = []
    stale: list[dict[str, Any]] = []
    empty: list[str] = []
    report = AuditReport(config=config, targets=summaries, results=results, stale=stale,
                         statements=claim_statements(), claim_filter=_split(claims), allow_empty=allow_empty,
                         empty=empty)
    try:
        emit({"event": "start", "config": config})
        for impl, adapter, session, failure in built:
            settings = RunSettings(
                device=dev,
                dtype=dt,
                profile=prof,
                seed=seed,
                time_limit_s=limit,
                impl=impl,
                save_inputs=save_dir,
                repro_options=repro_options(checks_from, deviation_dir, timeout, in_process),
            )
            if failure is not None:
                label = str(adapter)
                summaries.append(TargetSummary(
                    name=label, impl=impl, capabilities=[], conventions={},
                    gated=label in gated_names or impl in gated_names,
                    problems=[f"could not be built: {failure.message}"],
                ))
                mine = build_failure_results(label, specs, settings, failure)
                for r in mine:
                    on_result(r)
                results.extend(mine)
                continue
            summaries.append(_summary(
                impl, adapter, adapter.name in gated_names or impl in gated_names,
                adapter.declaration_problems() + dev_problems.get(adapter.name, []),
            ))
            mine = run_target(
                adapter,
                specs,
                settings,
                deviations[adapter.name],
                on_result=on_result,
                known_ids={s.id for s in all_specs},
                session=session,
            )
            if session is not None:
                session.stop()  # its threads and child processes end with it
            results.extend(mine)
            if not any(r.status in (PASS, FAIL, ERROR, KNOWN_DEVIATION) for r in mine):
                why = (
                    "declares no capability" if not adapter.capabilities
                    else "no selected check applied to it (all not-applicable or blocked)"
                )
                summaries[-1].problems.append(f"EMPTY: {why}; nothing was verified")
                empty.append(adapter.name)
                emit({"event": "empty-target", "target": adapter.name, "why": why})
            for dev_entry, why in stale_deviations(
                deviations[adapter.name], mine, all_specs, dev.type, dtype_name(dt)
            ):
                record = {
                    "target": adapter.name,
                    "entry": dev_entry.describe(),
                    "source": dev_entry.source,
                    "index": dev_entry.index,
                    "why": why,
                }
                stale.append(record)
                emit({"event": "stale-deviation", **record})
    finally:
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
