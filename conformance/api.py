"""Library API: ``run_audit`` runs checks against targets and writes the reports.

Used by the CLI (``python -m transformer_conformance run``) and the pytest plugin. Bad arguments raise
``UsageError`` (the CLI turns it into exit code 2) before any check runs.
"""

import fnmatch
import inspect
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from transformer_conformance.adapter import Adapter
from transformer_conformance.context import CI_SEED, PROFILES
from transformer_conformance.deviations import DEFAULT_DIR, Deviation, DeviationFileError, load_for_target
from transformer_conformance.reference.tolerance import TOLERANCE_VERSION
from transformer_conformance.registry import DEFAULT_REGISTRY, CheckSpec, Registry, load_builtin_checks
from transformer_conformance.report import AuditReport, TargetSummary, claim_statements
from transformer_conformance.runner import CheckResult, RunSettings, dtype_name, run_target, stale_deviations
from transformer_conformance.targets import (
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
    checks_from: str | None,
    deviations_dir: Path | None,
    timeout: float | None,
    import_paths: Sequence[Path] = (),
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
    return tuple(extra)


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


@dataclass
class TargetPlan:
    """One target of an audit: its adapter, run settings, deviations and report summary."""

    impl: str
    adapter: Adapter
    settings: RunSettings
    deviations: list[Deviation]
    summary: TargetSummary


@dataclass
class AuditPlan:
    """Everything resolved before a check runs (bad arguments are usage errors by then)."""

    config: dict[str, Any]
    targets: list[TargetPlan]
    specs: list[CheckSpec]  # the selected checks
    all_specs: list[CheckSpec]  # every check of the registry (deviation entries are judged against it)
    claims: list[str]  # --claims patterns


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
    gate: str | Sequence[str] | None = None,
    save_inputs: str | Path | None = None,
    registry: Registry | None = None,
    deviations_dir: str | Path | None = None,
    checks_from: str | None = None,
    import_paths: Sequence[str | Path] = (),
) -> AuditPlan:
    """Resolve targets, checks, deviations and settings as ``run_audit`` does, running nothing
    (the pytest plugin runs the plan one check per item)."""
    if profile not in PROFILES:
        raise UsageError(f"--profile: expected one of {sorted(PROFILES)}, got {profile!r}")
    prof = PROFILES[profile]
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine")
    dt = resolve_dtype(dtype)
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout: expected a positive number of seconds, got {timeout}")
    limit = timeout if timeout is not None else prof.time_limit_s
    if seed is None:
        seed = CI_SEED if prof.derandomized else random.SystemRandom().randrange(2**31)

    # Targets first: an unknown target is a usage error before anything runs.
    add_import_paths(import_paths)
    entries = _split(targets) if isinstance(targets, str) else list(targets)
    if not entries:
        raise UsageError("--impl: expected at least one target")
    adapters: list[tuple[str, Adapter]] = []
    for entry in entries:
        if isinstance(entry, Adapter):
            adapters.append((entry.name, entry))
            continue
        try:
            adapters.append((entry, resolve_target(entry)))
        except TargetError as exc:
            raise UsageError(f"--impl: {exc}") from exc
    names = [a.name for _, a in adapters]
    if len(set(names)) != len(names):
        raise UsageError(f"--impl: target names must be unique, got {names}")
    gated_names = set(_split(gate)) if gate is not None else set(names)
    unknown_gate = gated_names - set(names) - {impl for impl, _ in adapters}
    if unknown_gate:
        raise UsageError(f"--gate: {sorted(unknown_gate)} not among the audited targets {names}")

    if registry is not None:
        reg = registry
        checks_from = checks_from or registry_spec(registry)
    elif checks_from:
        reg = load_registry(checks_from)
    else:
        reg = load_builtin_checks()
    specs = select_checks(reg, claims, check)
    imported = [impl for impl, _ in adapters if ":" in impl] + ([checks_from] if checks_from else [])
    roots = [r for r in map(import_root, imported) if r is not None]
    deviation_dir = Path(deviations_dir) if deviations_dir is not None else None
    try:
        deviations = {a.name: load_for_target(a.name, deviation_dir) for _, a in adapters}
    except DeviationFileError as exc:
        raise UsageError(str(exc)) from exc

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
        "targets": [impl for impl, _ in adapters],
        "tolerance_version": TOLERANCE_VERSION,
        "torch": torch.__version__,
    }
    plans = []
    for impl, adapter in adapters:
        settings = RunSettings(
            device=dev,
            dtype=dt,
            profile=prof,
            seed=seed,
            time_limit_s=limit,
            impl=impl,
            save_inputs=Path(save_inputs) if save_inputs else None,
            repro_options=repro_options(checks_from, deviation_dir, timeout, roots),
        )
        summary = TargetSummary(
            name=adapter.name,
            impl=impl,
            capabilities=sorted(c.value for c in adapter.capabilities),
            conventions={
                k: (v if not isinstance(v, tuple) else [str(x) for x in v])
                for k, v in asdict(adapter.conventions).items()
            },
            gated=adapter.name in gated_names or impl in gated_names,
            problems=adapter.declaration_problems(),
            source=_source_file(adapter),
        )
        plans.append(TargetPlan(impl, adapter, settings, deviations[adapter.name], summary))
    return AuditPlan(config, plans, specs, reg.all(), _split(claims))


def target_stale(plan: AuditPlan, target: TargetPlan, results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    """The stale deviation entries of ``target`` given its ``results`` (report records)."""
    settings = target.settings
    found = stale_deviations(
        target.deviations, results, plan.all_specs, settings.device.type, dtype_name(settings.dtype)
    )
    return [
        {
            "target": target.adapter.name,
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
) -> AuditReport:
    """Audit ``targets`` (built-in names, ``package.module:factory`` strings or ``Adapter``s).

    ``registry`` (a ``Registry``) or ``checks_from`` (``package.module:attribute`` naming one)
    REPLACES the built-in checks; neither given: the built-in checks. Failures carry a repro
    command naming this interpreter and every option that changes what runs. ``import_paths``
    (``--path``) and the current working directory are put first on ``sys.path`` before
    ``package.module`` targets are imported.

    Claims: every claim realised by a selected check. Returns the report; its ``exit_code`` is 0
    when every gated target passed all applicable checks and no deviation entry is stale.
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
        gate=gate,
        save_inputs=save_inputs,
        registry=registry,
        deviations_dir=deviations_dir,
        checks_from=checks_from,
        import_paths=import_paths,
    )
    config, specs = plan.config, plan.specs
    paths = report_paths or ReportPaths()
    stream_path = paths.stream_path()
    stream = None
    if stream_path is not None:
        stream_path.parent.mkdir(parents=True, exist_ok=True)
        stream = stream_path.open("w", encoding="utf-8")
    bar = _Progress(progress, len(specs) * len(plan.targets), len(plan.targets))

    def emit(record: dict[str, Any]) -> None:
        if stream is not None:
            stream.write(json.dumps(record, default=str) + "\n")
            stream.flush()

    def on_result(result: CheckResult) -> None:
        emit({"event": "result", **result.to_json()})
        bar.result(result)

    results: list[CheckResult] = []
    summaries: list[TargetSummary] = []
    stale: list[dict[str, Any]] = []
    try:
        emit({"event": "start", "config": config})
        for target in plan.targets:
            summaries.append(target.summary)
            mine = run_target(
                target.adapter,
                specs,
                target.settings,
                target.deviations,
                on_result=on_result,
                known_ids={s.id for s in plan.all_specs},
            )
            results.extend(mine)
            bar.target(target.adapter.name, mine)
            for record in target_stale(plan, target, mine):
                stale.append(record)
                emit({"event": "stale-deviation", **record})
        report = AuditReport(
            config=config,
            targets=summaries,
            results=results,
            stale=stale,
            statements=claim_statements(),
            claim_filter=plan.claims,
            duration_s=time.perf_counter() - started,
        )
        report.summarise()
        emit({"event": "end", "exit_code": report.exit_code, "duration_s": report.duration_s})
    finally:
        bar.close()
        if stream is not None:
            stream.close()
    if paths.json is not None:
        report.write_json(paths.json)
    if paths.junit is not None:
        report.write_junit(paths.junit)
    if paths.markdown is not None:
        report.write_markdown(paths.markdown)
    return report
