"""What every check receives: seeded random inputs, timed target calls, and typed failures.

A check builds canonical inputs with ``ctx.randn`` / ``ctx.randint`` (CPU generator seeded from
the run seed and the check ID, so a rerun with the same seed reproduces them on any device),
records them with ``ctx.record``, calls the target only through ``ctx.call`` (timed as target
time; an exception becomes a RAISED failure), and judges the result with ``ctx.expect_*`` /
``ctx.compare*`` (tolerances from ``reference.tolerance``, never local constants).
"""

import hashlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn

import torch
from torch import Tensor

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.evidence import error_sample, worst_entry
from transformer_conformance.reference import tolerance
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.wire import MAX_WARNINGS, target_traceback, warning_lines


class FailureKind(StrEnum):
    """Why a check failed."""

    RAISED = "raised"  # the target raised
    SHAPE = "shape"  # wrong shape
    DTYPE = "dtype"  # wrong dtype
    NONFINITE = "nonfinite"  # NaN / Inf where the oracle is finite
    NUMERIC = "numeric"  # error above the tolerance policy's allowance
    PROPERTY = "property"  # a stated property does not hold
    TIMEOUT = "timeout"  # ran past the per-check time limit
    CRASHED = "crashed"  # the target's worker process died (the signal is named)
    EXITED = "exited"  # the target exited (SystemExit, KeyboardInterrupt, os._exit)
    MUTATED_INPUT = "mutated-input"  # the target modified an input tensor in place
    NOT_PLAIN_TENSOR = "not-plain-tensor"  # a tensor subclass, a meta or a non-dense tensor came back
    MEMORY_LIMIT = "memory-limit"  # the target went past --memory-limit


class CheckFailure(Exception):
    """Raised by a check (usually via ``ctx``) to fail, with the measured and allowed error."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        measured: float | None = None,
        allowed: float | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = FailureKind(kind)
        self.message = message
        self.measured = measured
        self.allowed = allowed
        # Small JSON-serialisable arrays that show the failure (conformance/evidence.py); the HTML report
        # draws them. Helpers add to it as the failure propagates (``evidence.attached``).
        self.evidence: dict[str, Any] = dict(evidence or {})
        # The minimal example that shows the failure (``conformance/search.py``): sizes, the drawn
        # example to replay, the offending entry, token ids, causality leaks. None outside the driver.
        self.counterexample: dict[str, Any] | None = None
        # The worst entry of a failed comparison (``ctx.compare*``): index, target, oracle, difference.
        self.offending: dict[str, Any] | None = None


class TargetRaised(CheckFailure):
    """A RAISED failure of an isolated target; ``cause`` is its exception as rebuilt in the audit."""

    def __init__(self, message: str, *, cause: BaseException, trace: str | None = None) -> None:
        super().__init__(FailureKind.RAISED, message)
        self.cause = cause
        self.trace = trace


class NotApplicable(Exception):
    """Raised by a check when the target's declared conventions make it meaningless."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Profile:
    """How hard to look: examples per property check (drawn by hypothesis, ``conformance/search.py``),
    the default per-check time limit, and the bounded shrink budget of a failure (at most
    ``shrink_calls`` replays of the property and ``shrink_s`` seconds). ``model_examples``: drawn
    examples of a whole-layer or whole-model check (after its fixed cases), whose every example builds
    and runs a model, so the default audit stays within its time budget. ``kernel``: sizes are drawn
    from the block-boundary sets of ``conformance/strategies.py`` (attention kernels)."""

    name: str
    examples: int
    time_limit_s: float
    derandomized: bool = False
    shrink_calls: int = 100
    shrink_s: float = 10.0
    kernel: bool = False
    model_examples: int = 1


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", examples=2, time_limit_s=30.0, shrink_calls=50, shrink_s=5.0),
    "ci": Profile("ci", examples=4, time_limit_s=60.0, derandomized=True, shrink_calls=100, shrink_s=10.0),
    "thorough": Profile(
        "thorough", examples=25, time_limit_s=600.0, shrink_calls=500, shrink_s=60.0, model_examples=8
    ),
    "kernel": Profile("kernel", examples=3, time_limit_s=600.0, shrink_calls=60, shrink_s=60.0, kernel=True),
}

#: The seed used whenever a derandomized profile (``ci``) runs without ``--seed``.
CI_SEED = 20240601


def derive_seed(seed: int, check_id: str) -> int:
    """A stable 63-bit seed from the run seed and the check ID (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(f"{seed}:{check_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def describe_value(value: Any) -> Any:
    """A JSON-friendly description of a recorded input (tensors by shape/dtype/device)."""
    if isinstance(value, Tensor):
        return {
            "shape": list(value.shape),
            "dtype": str(value.dtype).removeprefix("torch."),
            "device": str(value.device),
        }
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    if isinstance(value, list | tuple):
        return [describe_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe_value(v) for k, v in value.items()}
    return repr(value)


class CheckContext:
    """The per-check environment (see docs/ARCHITECTURE.md, "conformance/context.py")."""

    def __init__(
        self,
        adapter: Adapter,
        *,
        device: torch.device,
        dtype: torch.dtype,
        profile: Profile,
        seed: int,
        check_id: str,
        session: Any = None,
        needs: frozenset[Capability] = frozenset(),
        shrink: bool = True,
        replay: dict[str, Any] | None = None,
    ) -> None:
        self.adapter = adapter
        self.session = session  # the target's worker (isolation.TargetSession); None in-process
        self.needs = needs
        self.device = torch.device(device)
        self.dtype = dtype
        self.profile = profile
        self.seed = seed
        self.check_id = check_id
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(derive_seed(seed, check_id))
        self.inputs: dict[str, Any] = {}
        self.tensors: dict[str, Any] = {}
        self.target_time_s = 0.0
        self.target_calls = 0
        self.warnings: list[str] = []  # warnings the target raised during this check, one line each
        # The search driver (conformance/search.py): shrink failures or not; the one example to replay
        # ({"search": n, "example": {...}} from a report's counterexample, ``--example``); searches so far.
        self.shrink = shrink
        self.replay = replay
        self.searches = 0

    @property
    def examples(self) -> int:
        """Number of examples a property check should draw under the current profile."""
        return self.profile.examples

    @property
    def model_examples(self) -> int:
        """Examples a whole-layer or whole-model check draws after its fixed cases (``Profile``)."""
        return self.profile.model_examples

    # -- inputs -----------------------------------------------------------------------------
    def randn(self, *shape: int, dtype: torch.dtype | None = None, scale: float = 1.0) -> Tensor:
        """Standard normal values times ``scale``, drawn in float64 on the CPU generator, then
        cast to ``dtype`` (default ``ctx.dtype``) on ``ctx.device``: identical draws for every
        device and dtype."""
        values = torch.randn(*shape, generator=self.generator, dtype=torch.float64) * scale
        return values.to(device=self.device, dtype=dtype or self.dtype)

    def randint(self, high: int, shape: tuple[int, ...] | list[int], low: int = 0) -> Tensor:
        """Integers in ``[low, high)`` (int64) on ``ctx.device``."""
        values = torch.randint(low, high, tuple(shape), generator=self.generator, dtype=torch.int64)
        return values.to(self.device)

    def record(self, **inputs: Any) -> None:
        """Record inputs for the report (described) and for ``--save-inputs`` (kept as is)."""
        for key, value in inputs.items():
            self.inputs[key] = describe_value(value)
            self.tensors[key] = value.detach() if isinstance(value, Tensor) else value

    # -- calling the target ------------------------------------------------------------------
    def _sync(self) -> None:
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.synchronize(self.device)

    def _note_warnings(self, lines: list[str]) -> None:
        for line in lines:
            if line not in self.warnings and len(self.warnings) < MAX_WARNINGS:
                self.warnings.append(line)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call into the target, timing it as target time; any exception is a RAISED failure.

        Isolated (``session`` set), ``fn`` is a proxy and the call runs in the target's worker: its
        failures (raised, crashed, exited, timeout, mutated-input, ...) arrive as ``CheckFailure``s
        and the target time is the time measured inside the worker."""
        name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
        if self.session is not None:
            before, warned = self.session.target_time_s, len(self.session.warnings)
            try:
                return fn(*args, **kwargs)
            except CheckFailure:
                raise
            except Exception as exc:
                raise CheckFailure(
                    FailureKind.RAISED,
                    f"target {self.adapter.name!r}: {name} raised {type(exc).__name__}: {exc}",
                ) from exc
            finally:
                self.target_time_s += self.session.target_time_s - before
                self.target_calls += 1
                self._note_warnings(self.session.warnings[warned:])
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:  # in-process: best effort (threads)
                warnings.simplefilter("always")
                result = fn(*args, **kwargs)
                self._sync()
            self._note_warnings(warning_lines(caught))
        except Exception as exc:
            raise TargetRaised(
                f"target {self.adapter.name!r}: {name} raised {type(exc).__name__}: {exc}",
                cause=exc,
                trace=target_traceback(exc),
            ) from exc
        finally:
            self.target_time_s += time.perf_counter() - start
            self.target_calls += 1
        return result

    def expect_error(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> BaseException:
        """Call into the target expecting it to raise; a normal return is a PROPERTY failure.

        (Extension of the documented API, for claims such as sampling.invalid-temperature.)"""
        if self.session is not None:
            before = self.session.target_time_s
            try:
                fn(*args, **kwargs)
            except TargetRaised as raised:
                return raised.cause
            finally:
                self.target_time_s += self.session.target_time_s - before
                self.target_calls += 1
            self.fail(FailureKind.PROPERTY, f"{what}: expected an error, the target returned normally")
        start = time.perf_counter()
        try:
            fn(*args, **kwargs)
            self._sync()
        except Exception as exc:
            return exc
        finally:
            self.target_time_s += time.perf_counter() - start
            self.target_calls += 1
        self.fail(FailureKind.PROPERTY, f"{what}: expected an error, the target returned normally")

    @property
    def conventions(self) -> Conventions:
        """The target's conventions for the capabilities this check needs (``Adapter.conventions_for``)."""
        return self.adapter.conventions_for(self.needs)

    @property
    def architecture(self) -> Architecture:
        """The target's declared architecture for this check's capabilities (notes' default if none)."""
        return self.adapter.architecture_for(self.needs)

    def to_target_mask(self, keep: Tensor | None) -> Tensor | None:
        """Canonical boolean mask (True = may attend) -> the target's declared polarity."""
        if keep is None:
            return None
        if self.conventions.mask_polarity == "true_masks":
            return ~keep
        return keep

    # -- judging -----------------------------------------------------------------------------
    def fail(
        self,
        kind: FailureKind,
        message: str,
        measured: float | None = None,
        allowed: float | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> NoReturn:
        """Fail the check (``evidence``: see ``conformance/evidence.py``)."""
        raise CheckFailure(kind, message, measured=measured, allowed=allowed, evidence=evidence)

    def expect_shape(self, what: str, tensor: Any, shape: tuple[int, ...] | list[int] | torch.Size) -> None:
        """SHAPE failure unless ``tensor`` is a tensor of exactly ``shape``."""
        if not isinstance(tensor, Tensor):
            self.fail(
                FailureKind.SHAPE,
                f"{what}: expected a tensor of shape {tuple(shape)}, got {type(tensor).__name__}",
            )
        if tuple(tensor.shape) != tuple(shape):
            self.fail(FailureKind.SHAPE, f"{what}: expected shape {tuple(shape)}, got {tuple(tensor.shape)}")

    def expect_dtype(self, what: str, tensor: Tensor, dtype: torch.dtype) -> None:
        """DTYPE failure unless ``tensor.dtype == dtype``."""
        if tensor.dtype != dtype:
            self.fail(FailureKind.DTYPE, f"{what}: expected dtype {dtype}, got {tensor.dtype}")

    def expect_finite(self, what: str, tensor: Tensor) -> None:
        """NONFINITE failure if any entry is NaN or infinite."""
        finite = torch.isfinite(tensor.detach())
        if not bool(finite.all()):
            bad = int((~finite).sum())
            self.fail(FailureKind.NONFINITE, f"{what}: {bad} of {tensor.numel()} entries are NaN/Inf")

    def _prepare(self, what: str, actual: Any, expected: Tensor) -> Tensor:
        self.expect_shape(what, actual, expected.shape)
        tensor: Tensor = actual
        if not tensor.is_floating_point():
            self.fail(FailureKind.DTYPE, f"{what}: expected a floating dtype, got {tensor.dtype}")
        exp_finite = torch.isfinite(expected.detach().to(torch.float64).cpu())
        act_finite = torch.isfinite(tensor.detach().to(torch.float64).cpu())
        if bool((exp_finite & ~act_finite).any()):
            bad = int((exp_finite & ~act_finite).sum())
            self.fail(FailureKind.NONFINITE, f"{what}: {bad} entries are NaN/Inf where the oracle is finite")
        return tensor

    def compare(
        self,
        what: str,
        actual: Any,
        oracle64: Tensor,
        reference_same_dtype: Tensor,
        *,
        conditioning: Tensor | None = None,
        dims: tuple[str, ...] | None = None,
        coords: dict[int, Any] | None = None,
    ) -> None:
        """Differential rule (``reference.tolerance.differential``, with the optional ``conditioning``
        bound); NUMERIC failure when exceeded. ``dims`` names the compared tensor's dimensions and
        ``coords`` maps a dimension to the original index of each of its entries (a sliced or
        row-selected tensor), for the counterexample's offending entry (``evidence.worst_entry``)."""
        tensor = self._prepare(what, actual, oracle64)
        result = tolerance.differential(tensor, oracle64, reference_same_dtype, conditioning=conditioning)
        if not result.ok:
            errors = error_sample(tensor, oracle64, result.allowed, result.rule)
            self._fail_numeric(f"{what}: {result.describe()}", result, errors, tensor, oracle64, dims, coords)

    def compare_direct(
        self,
        what: str,
        actual: Any,
        expected64: Tensor,
        *,
        dims: tuple[str, ...] | None = None,
        coords: dict[int, Any] | None = None,
    ) -> None:
        """Direct rule (``reference.tolerance.direct``); NUMERIC failure when exceeded (``dims``,
        ``coords``: see ``compare``)."""
        tensor = self._prepare(what, actual, expected64)
        result = tolerance.direct(tensor, expected64)
        if not result.ok:
            errors = error_sample(tensor, expected64, None, result.rule)
            message = f"{what}: {result.describe()}"
            self._fail_numeric(message, result, errors, tensor, expected64, dims, coords)

    def _fail_numeric(
        self,
        message: str,
        result: Any,
        errors: dict[str, Any],
        tensor: Tensor,
        expected64: Tensor,
        dims: tuple[str, ...] | None,
        coords: dict[int, Any] | None,
    ) -> NoReturn:
        failure = CheckFailure(
            FailureKind.NUMERIC, message, measured=result.measured, allowed=result.allowed, evidence=errors
        )
        try:
            failure.offending = worst_entry(tensor, expected64, dims=dims, coords=coords)
        except Exception:  # the offending entry is a courtesy: never a harness error
            failure.offending = None
        raise failure
