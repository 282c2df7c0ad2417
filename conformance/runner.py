"""Runs checks against one target: capability gating, dependencies, time limits, deviations.

Isolated (the default, ``session`` given): the target lives in its own worker process
(``transformer_conformance.isolation``); a check runs here, in the audit's thread, and every call
into the target waits for the worker until the check's time limit, after which the worker is killed
(a TIMEOUT failure) and the next check gets a fresh one. A worker that died or was killed is
restarted before the next check. In-process (``--in-process``, for debugging only): every check runs
in a daemon thread joined with the time limit, and a hung target's thread is abandoned. Each result
is handed to ``on_result`` as soon as it is known (the API streams it to a JSONL file).
"""

import os
import shlex
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from transformer_conformance.adapter import Adapter
from transformer_conformance.context import CheckContext, CheckFailure, FailureKind, NotApplicable, Profile
from transformer_conformance.deviations import Deviation
from transformer_conformance.registry import CheckSpec
from transformer_conformance.search import failure_detail

PASS = "pass"
FAIL = "fail"
BLOCKED = "blocked"
NOT_APPLICABLE = "not-applicable"
KNOWN_DEVIATION = "known-deviation"
ERROR = "error"
STATUSES = (PASS, FAIL, KNOWN_DEVIATION, ERROR, BLOCKED, NOT_APPLICABLE)


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


@dataclass
class CheckResult:
    """The outcome of one check on one target (one JSON line of the streamed report)."""

    target: str
    check: str
    claims: list[str]
    status: str
    check_kind: str = "structural"
    failure_kind: str | None = None
    message: str = ""
    measured: float | None = None
    allowed: float | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    profile: str = "ci"
    duration_s: float = 0.0
    target_time_s: float = 0.0
    repro: str | None = None
    blocked_by: str | None = None
    missing: list[str] = field(default_factory=list)
    deviation: dict[str, Any] | None = None
    saved_inputs: str | None = None
    traceback: str | None = None
    evidence: dict[str, Any] | None = None  # small arrays that show a failure (conformance/evidence.py)
    # the minimal failing example (conformance/search.py): sizes, example, offending entry, token ids
    counterexample: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)  # what the target warned during the check
    searches: int = 0  # how many searches of the driver (conformance/search.py) the check ran

    @property
    def harness_time_s(self) -> float:
        """Wall time of the check not spent inside the target."""
        return max(0.0, self.duration_s - self.target_time_s)

    def to_json(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable)."""
        data = asdict(self)
        data["harness_time_s"] = self.harness_time_s
        return data


def python_command(cwd: Path | None = None) -> str:
    """The interpreter running this audit (``sys.executable``), relative to ``cwd`` when inside it.

    A fresh clone's bare ``python`` may lack torch; the printed command must use the same
    interpreter (e.g. ``.venv/bin/python``). Symlinks are kept: a venv's python is one."""
    exe = Path(sys.executable or "python")
    base = Path.cwd() if cwd is None else cwd
    try:
        rel = exe.relative_to(base) if exe.is_absolute() else exe
    except ValueError:
        return shlex.quote(str(exe))
    text = str(rel)
    if os.sep not in text and "/" not in text:  # bare name in the cwd: make it a path
        text = f".{os.sep}{text}"
    return shlex.quote(text)


def repro_command(
    impl: str,
    check_id: str,
    seed: int,
    device: str,
    dtype: str,
    profile: str,
    extra: Sequence[str] = (),
    python: str | None = None,
) -> str:
    """The command line that reruns exactly this check.

    ``extra`` carries the other options that change what runs (``--checks-from``,
    ``--deviations``, ``--timeout``); ``python`` defaults to :func:`python_command`."""
    args = [
        "-m",
        "transformer_conformance",
        "run",
        "--impl",
        impl,
        "--check",
        check_id,
        "--seed",
        str(seed),
        "--device",
        device,
        "--dtype",
        dtype,
        "--profile",
        profile,
        *extra,
    ]
    return " ".join([python or python_command(), *(shlex.quote(a) for a in args)])


def order_checks(checks: Sequence[CheckSpec]) -> list[CheckSpec]:
    """Registration order, except that a check always comes after the checks it depends on."""
    by_id = {c.id: c for c in checks}
    done: set[str] = set()
    ordered: list[CheckSpec] = []

    def visit(spec: CheckSpec, stack: tuple[str, ...]) -> None:
        if spec.id in done:
            return
        if spec.id in stack:
            raise ValueError(f"check dependency cycle: {' -> '.join((*stack, spec.id))}")
        for dep in spec.depends_on:
            if dep in by_id:
                visit(by_id[dep], (*stack, spec.id))
        done.add(spec.id)
        ordered.append(spec)

    for spec in checks:
        visit(spec, ())
    return ordered


def _built_on(adapter: Adapter, spec: CheckSpec, dependency: CheckSpec | None) -> bool:
    """Whether ``dependency`` judges something ``spec``'s capabilities are built from: a check of the
    same capability always is; another capability's only when the target's ``built_from`` (default:
    everything it declares) names it, so a broken optional MHA does not block an LM that never uses it."""
    if dependency is None or dependency.needs <= spec.needs:
        return True
    parts = set(spec.needs)
    for cap in spec.needs:
        parts |= adapter.built_from(cap)
    return dependency.needs <= parts


@dataclass
class _Outcome:
    status: str = ERROR
    failure: CheckFailure | None = None
    reason: str = ""
    trace: str | None = None
    finished: bool = False


def _run_in_thread(spec: CheckSpec, ctx: CheckContext, limit_s: float) -> _Outcome:
    outcome = _Outcome()

    def work() -> None:
        try:
            with torch.no_grad():
                spec.fn(ctx)
            outcome.status = PASS
        except CheckFailure as failure:
            outcome.status, outcome.failure = FAIL, failure
            outcome.trace = getattr(failure, "trace", None)
        except NotApplicable as na:
            outcome.status, outcome.reason = NOT_APPLICABLE, na.reason
        except BaseException as exc:  # a bug in the check or the harness, not in the target
            outcome.status = ERROR
            outcome.reason = f"harness error in check {spec.id}: {type(exc).__name__}: {exc}"
            outcome.trace = traceback.format_exc()
        finally:
            outcome.finished = True

    worker = threading.Thread(target=work, name=f"check:{spec.id}", daemon=True)
    worker.start()
    worker.join(limit_s)
    if not outcome.finished:
        message = (
            f"check did not finish within the time limit of {limit_s:g} s (the target hung or is "
            "far too slow); abandoned, the run goes on"
        )
        return _Outcome(FAIL, CheckFailure(FailureKind.TIMEOUT, message, allowed=limit_s), finished=True)
    return outcome


def _run_isolated(spec: CheckSpec, ctx: CheckContext, session: Any, limit_s: float) -> _Outcome:
    """Run one check here against the target's worker (restarted first when it died)."""
    if not session.alive:
        try:
            ctx.adapter = session.start(limit_s)
        except CheckFailure as failure:
            return _Outcome(FAIL, failure, finished=True)
    session.begin_check(limit_s)
    try:
        with torch.no_grad():
            spec.fn(ctx)
        return _Outcome(PASS, finished=True)
    except CheckFailure as failure:
        return _Outcome(FAIL, failure, trace=getattr(failure, "trace", None), finished=True)
    except NotApplicable as na:
        return _Outcome(NOT_APPLICABLE, reason=na.reason, finished=True)
    except Exception as exc:  # a bug in the check or the harness, not in the target
        return _Outcome(
            ERROR,
            reason=f"harness error in check {spec.id}: {type(exc).__name__}: {exc}",
            trace=traceback.format_exc(),
            finished=True,
        )
    finally:
        session.end_check()


def counterexample_of(failure: CheckFailure, ctx: CheckContext | None = None) -> dict[str, Any] | None:
    """The failure's counterexample (``conformance/search.py``); for a check that does not search,
    what the failure and the recorded inputs of ``ctx`` show (``search.failure_detail``: shapes, the
    offending entry, token ids, causality leaks), None when they show nothing."""
    counter = getattr(failure, "counterexample", None)
    if counter is not None:
        return dict(counter)
    if ctx is None:
        offending = getattr(failure, "offending", None)
        return {"offending": offending} if offending else None
    detail = failure_detail(ctx, failure)
    return detail if set(detail) - {"shapes"} else None


def build_failure_results(
    label: str, checks: Sequence[CheckSpec], settings: "RunSettings", failure: CheckFailure
) -> list[CheckResult]:
    """Every check FAILs with ``failure`` for a target that could not even be built in its worker."""
    results = []
    for spec in order_checks(checks):
        results.append(
            CheckResult(
                target=label,
                check=spec.id,
                claims=list(spec.claims),
                status=FAIL,
                check_kind=spec.kind,
                failure_kind=failure.kind.value,
                message=f"the target could not be built: {failure.message}",
                allowed=failure.allowed,
                seed=settings.seed,
                device=str(settings.device),
                dtype=dtype_name(settings.dtype),
                profile=settings.profile.name,
                repro=repro_command(
                    settings.impl,
                    spec.id,
                    settings.seed,
                    str(settings.device),
                    dtype_name(settings.dtype),
                    settings.profile.name,
                    settings.repro_options,
                ),
            )
        )
    return results


def _save_inputs(directory: Path, target: str, check_id: str, ctx: CheckContext) -> str | None:
    directory.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{target}__{check_id}")
    path = directory / f"{safe}.pt"
    payload = {
        "target": target,
        "check": check_id,
        "seed": ctx.seed,
        "device": str(ctx.device),
        "dtype": dtype_name(ctx.dtype),
        "inputs": dict(ctx.tensors),
    }
    try:
        torch.save(payload, path)
    except Exception:  # unpicklable recorded values: keep the tensors only
        payload["inputs"] = {k: v for k, v in ctx.tensors.items() if isinstance(v, torch.Tensor)}
        torch.save(payload, path)
    return str(path)


@dataclass
class RunSettings:
    """Settings shared by every check of one target run."""

    device: torch.device
    dtype: torch.dtype
    profile: Profile
    seed: int
    time_limit_s: float
    impl: str
    save_inputs: Path | None = None
    repro_options: tuple[str, ...] = ()  # extra CLI options a repro command must carry
    shrink: bool = True  # shrink a failure to a minimal example (conformance/search.py)
    replay: dict[str, Any] | None = None  # the one example to run (``--example``), exact replay


def run_target(
    adapter: Adapter,
    checks: Sequence[CheckSpec],
    settings: RunSettings,
    deviations: Sequence[Deviation] = (),
    on_result: Callable[[CheckResult], None] | None = None,
    on_start: Callable[[CheckSpec], None] | None = None,
    known_ids: set[str] | None = None,
    prior: dict[str, CheckResult] | None = None,
    session: Any = None,
) -> list[CheckResult]:
    """Run ``checks`` (dependencies first) against ``adapter``; returns one result per check.

    ``prior`` holds results of this target already known (the pytest plugin runs one check per
    item): a dependency among them blocks as if it had run in this call. ``session`` (an
    ``isolation.TargetSession`` whose ``adapter`` is ``adapter``) runs the target in its worker
    process; without it the target runs in this process (threads, unsafe for gating)."""
    results: dict[str, CheckResult] = dict(prior or {})
    dev_name, dt_name = settings.device.type, dtype_name(settings.dtype)
    active = [d for d in deviations if d.applies_to_run(dev_name, dt_name)]
    specs = {c.id: c for c in checks}

    for spec in order_checks(checks):
        declared_dtypes = adapter.conventions_for(spec.needs).dtypes
        dtype_ok = settings.dtype in declared_dtypes
        if on_start is not None:
            on_start(spec)
        result = CheckResult(
            target=adapter.name,
            check=spec.id,
            claims=list(spec.claims),
            status=ERROR,
            check_kind=spec.kind,
            seed=settings.seed,
            device=str(settings.device),
            dtype=dt_name,
            profile=settings.profile.name,
        )
        missing = sorted(c.value for c in spec.needs - adapter.capabilities)
        # A dependency blocks unless it passed or is not applicable (the target does not declare that
        # capability, e.g. a layer without a separate attention function). A known deviation blocks too:
        # the dependent's result would only restate the accepted deviation.
        held = (PASS, NOT_APPLICABLE)
        blocking = [
            d
            for d in spec.depends_on
            if d in results and results[d].status not in held and _built_on(adapter, spec, specs.get(d))
        ]
        unknown = [d for d in spec.depends_on if known_ids is not None and d not in known_ids]
        if unknown:
            result.message = f"harness error: check {spec.id} depends on unknown check(s) {unknown}"
        elif missing:
            result.status, result.missing = NOT_APPLICABLE, missing
            result.message = f"target does not declare capability {', '.join(missing)}"
        elif not dtype_ok:
            result.status = NOT_APPLICABLE
            result.message = (
                f"target does not declare dtype {dt_name} (declares "
                f"{', '.join(dtype_name(d) for d in declared_dtypes)})"
            )
        elif blocking:
            dep = results[blocking[0]]
            result.status, result.blocked_by = BLOCKED, dep.check
            result.message = f"blocked by {dep.check} ({dep.status})"
        else:
            ctx = CheckContext(
                adapter,
                device=settings.device,
                dtype=settings.dtype,
                profile=settings.profile,
                seed=settings.seed,
                check_id=spec.id,
                session=session,
                needs=spec.needs,
                # a known deviation is reported as found: shrinking it would only cost time on every run
                shrink=settings.shrink and not any(d.matches(spec.id, spec.claims) for d in active),
                replay=settings.replay,
            )
            start = time.perf_counter()
            if session is not None:
                outcome = _run_isolated(spec, ctx, session, settings.time_limit_s)
            else:
                outcome = _run_in_thread(spec, ctx, settings.time_limit_s)
            result.duration_s = time.perf_counter() - start
            result.target_time_s = min(ctx.target_time_s, result.duration_s)
            result.inputs = dict(ctx.inputs)
            result.warnings = list(ctx.warnings)
            result.searches = ctx.searches
            result.status = outcome.status
            if outcome.failure is not None:
                failure = outcome.failure
                result.failure_kind = failure.kind.value
                result.message = failure.message
                result.measured, result.allowed = failure.measured, failure.allowed
                result.evidence = failure.evidence or None
                result.counterexample = counterexample_of(failure, ctx)
            else:
                result.message = outcome.reason
            result.traceback = outcome.trace
            if result.status in (FAIL, ERROR):
                replay = result.counterexample.get("replay") if result.counterexample else None
                result.repro = repro_command(
                    settings.impl,
                    spec.id,
                    settings.seed,
                    str(settings.device),
                    dt_name,
                    settings.profile.name,
                    (*settings.repro_options, *(("--example", replay) if replay else ())),
                )
            if result.status == FAIL:
                match = next((d for d in active if d.matches(spec.id, spec.claims)), None)
                if match is not None:
                    result.status, result.deviation = KNOWN_DEVIATION, match.to_json()
                if settings.save_inputs is not None and ctx.tensors:
                    result.saved_inputs = _save_inputs(settings.save_inputs, adapter.name, spec.id, ctx)
        results[spec.id] = result
        if on_result is not None:
            on_result(result)
    return [r for cid, r in results.items() if prior is None or cid not in prior]


def stale_deviations(
    deviations: Sequence[Deviation],
    results: Sequence[CheckResult],
    all_specs: Sequence[CheckSpec],
    device_type: str,
    dtype: str,
) -> list[tuple[Deviation, str]]:
    """Entries that match no failing check: (entry, why). Entries whose checks did not run in this
    run (filtered out, not applicable, blocked) or that are restricted to another dtype/device are
    not judged; an entry matching no registered check at all is always stale."""
    stale = []
    for dev in deviations:
        if not any(dev.matches(s.id, s.claims) for s in all_specs):
            stale.append((dev, "matches no registered check (unknown claim or check ID)"))
            continue
        if not dev.applies_to_run(device_type, dtype):
            continue
        judged = [
            r
            for r in results
            if dev.matches(r.check, r.claims) and r.status in (PASS, FAIL, ERROR, KNOWN_DEVIATION)
        ]
        if not judged:
            continue
        key = (dev.source, dev.index)
        used = any(
            r.status == KNOWN_DEVIATION
            and r.deviation is not None
            and (r.deviation["source"], r.deviation["index"]) == key
            for r in judged
        )
        if not used:
            checks = ", ".join(sorted({r.check for r in judged}))
            stale.append((dev, f"matches no failing check (checks run: {checks}); remove the entry"))
    return stale
