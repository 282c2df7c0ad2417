"""Shared timing and memory helpers for the benchmarks.

Rules every benchmark follows:

- Contenders are measured side by side in one run: each round calls every contender once, the order
  rotating from round to round, and a figure is the median over rounds. Ratios of medians are reported;
  nothing asserts an absolute time.
- On CUDA every timed call is bracketed by ``torch.cuda.synchronize``.
- Peak memory of one call: on CUDA ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``,
  minus what was allocated before the call. On CPU the allocation and free events that
  ``torch.profiler.profile(profile_memory=True)`` records for the call are summed in time order and the
  running maximum is taken: the peak of bytes the computation itself held at once (its inputs excluded).
"""

import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

Mode = Literal["full", "quick", "tiny"]


@dataclass(frozen=True)
class Settings:
    """What one benchmark run was asked for: device, size mode, repeats, optional skips."""

    device: torch.device
    mode: Mode = "full"
    repeats: int | None = None
    skip_thorough: bool = False
    seed: int = 0
    seeds: int | None = None  # calibration: seeds per target and profile (None: the mode's default)
    mutant_seeds: int | None = None  # calibration: seeds per mutant and profile (None: seeds // 10)
    part: str = "all"  # calibration: "all", "false-alarms" or "kills" (the halves can run side by side)

    def rounds(self, full: int, quick: int, tiny: int = 1) -> int:
        """Number of measured rounds: ``--repeats`` when given, else the mode's default."""
        if self.repeats is not None:
            return self.repeats
        return {"full": full, "quick": quick, "tiny": tiny}[self.mode]

    def pick(self, full: Any, quick: Any, tiny: Any) -> Any:
        """A size (or anything) by mode."""
        return {"full": full, "quick": quick, "tiny": tiny}[self.mode]


@dataclass
class Row:
    """One figure of the table. ``meets`` is None when the figure has no target."""

    bench: str
    case: str
    metric: str
    value: float
    unit: str = ""
    target: str = ""
    meets: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """What makes this row malformed (empty when it is well formed)."""
        found: list[str] = []
        for name in ("bench", "case", "metric"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                found.append(f"{name}: expected a non-empty string, got {getattr(self, name)!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            found.append(f"value: expected a number, got {type(self.value).__name__}")
        elif not math.isfinite(self.value):
            found.append(f"value: expected a finite number, got {self.value}")
        if self.target and not isinstance(self.meets, bool):
            found.append(f"meets: expected True/False for target {self.target!r}, got {self.meets!r}")
        if not self.target and self.meets is not None:
            found.append(f"meets: expected None without a target, got {self.meets!r}")
        return found

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON; a non-finite value becomes None (strict JSON has no NaN)."""
        data = asdict(self)
        if not math.isfinite(self.value):
            data["value"] = None
        return data


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for ``cuda`` without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("argument '--device': expected a machine with CUDA for 'cuda', got none available")
    if name not in ("cpu", "cuda"):
        raise SystemExit(f"argument '--device': expected auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call of ``fn``, synchronised on CUDA."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleaved(
    contenders: dict[str, Callable[[], object]], device: torch.device, rounds: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Time every contender once per round, rotating the order; return the measured seconds per name.

    Warm-up rounds (same rotation) are run first and discarded.
    """
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = time_call(contenders[name], device)
            if r >= warmup:
                times[name].append(elapsed)
    return times


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    if not values:
        raise ValueError("argument 'values': expected at least one measurement, got none")
    return float(statistics.median(values))


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the profiler's C++ start/stop log lines) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated by one call of ``fn`` beyond what was live before it (see module docstring)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = fn()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del result
        return int(peak)
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    del result
    kineto = getattr(prof.profiler, "kineto_results", None) if prof.profiler is not None else None
    if kineto is None:
        raise RuntimeError("torch.profiler gave no kineto results: cannot measure CPU peak memory")
    events = sorted(
        (e for e in kineto.events() if e.name() == "[memory]" and str(e.device_type()) == "DeviceType.CPU"),
        key=lambda e: e.start_ns(),
    )
    live = peak = 0
    for event in events:
        live += int(event.nbytes())
        peak = max(peak, live)
    return peak


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(x): the growth exponent (1 = linear, 2 = quadratic)."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    return linear_slope(lx, ly)


def linear_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of y against x."""
    n = len(xs)
    if n < 2 or n != len(ys):
        raise ValueError(f"argument 'xs': expected at least 2 points matching ys, got {n} and {len(ys)}")
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("argument 'xs': expected at least two distinct values, got all equal")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
