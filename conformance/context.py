"""What every check receives: seeded random inputs, timed target calls, and typed failures.

A check builds canonical inputs with ``ctx.randn`` / ``ctx.randint`` (CPU generator seeded from
the run seed and the check ID, so a rerun with the same seed reproduces them on any device),
records them with ``ctx.record``, calls the target only through ``ctx.call`` (timed as target
time; an exception becomes a RAISED failure), and judges the result with ``ctx.expect_*`` /
``ctx.compare*`` (tolerances from ``reference.tolerance``, never local constants).
"""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn

import torch
from torch import Tensor

from transformer_conformance.adapter import Adapter
from transformer_conformance.evidence import error_sample
from transformer_conformance.reference import tolerance


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
    """How hard to look: examples per property check and the default per-check time limit."""

    name: str
    examples: int
    time_limit_s: float
    derandomized: bool = False


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", examples=2, time_limit_s=30.0),
    "ci": Profile("ci", examples=4, time_limit_s=60.0, derandomized=True),
    "thorough": Profile("thorough", examples=25, time_limit_s=600.0),
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
    ) -> None:
        self.adapter = adapter
        self.session = session  # the target's worker (isolation.TargetSession); None in-process
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

    @property
    def examples(self) -> int:
        """Number of examples a property check should draw under the current profile."""
        return self.profile.examples

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

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call into the target, timing it as target time; any exception is a RAISED failure.

        Isolated (``session`` set), ``fn`` is a proxy and the call runs in the target's worker: its
        failures (raised, crashed, exited, timeout, mutated-input, ...) arrive as ``CheckFailure``s
        and the target time is the time measured inside the worker."""
        name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
        if self.session is not None:
            before = self.session.target_time_s
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
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
            self._sync()
        except Exception as exc:
            raise CheckFailure(
                FailureKind.RAISED, f"target {self.adapter.name!r}: {name} raised {type(exc).__name__}: {exc}"
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

    def to_target_mask(self, keep: Tensor | None) -> Tensor | None:
        """Canonical boolean mask (True = may attend) -> the target's declared polarity."""
        if keep is None:
            return None
        if self.adapter.conventions.mask_polarity == "true_masks":
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
    ) -> None:
        """Differential rule (``reference.tolerance.differential``, with the optional ``conditioning``
        bound); NUMERIC failure when exceeded."""
        tensor = self._prepare(what, actual, oracle64)
        result = tolerance.differential(tensor, oracle64, reference_same_dtype, conditioning=conditioning)
        if not result.ok:
            errors = error_sample(tensor, oracle64, result.allowed, result.rule)
            self.fail(
                FailureKind.NUMERIC, f"{what}: {result.describe()}", result.measured, result.allowed, errors
            )

    def compare_direct(self, what: str, actual: Any, expected64: Tensor) -> None:
        """Direct rule (``reference.tolerance.direct``); NUMERIC failure when exceeded."""
        tensor = self._prepare(what, actual, expected64)
        result = tolerance.direct(tensor, expected64)
        if not result.ok:
            errors = error_sample(tensor, expected64, None, result.rule)
            self.fail(
                FailureKind.NUMERIC, f"{what}: {result.describe()}", result.measured, result.allowed, errors
            )
