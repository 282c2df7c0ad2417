"""The one tolerance policy of the project (version ``TOLERANCE_VERSION``).

Every numerical comparison in tests, checks and benchmarks goes through this module; nothing else
defines an ``atol``. Two rules, both against a float64 oracle computed by the reference:

1. Differential rule (FlashAttention's method): a target computing in dtype ``D`` passes when
   ``max|target - oracle64| <= MULTIPLE[D] * max|reference_in_D - oracle64| + FLOOR[D]``.
   The reference run in the target's own dtype measures how much error that dtype forces on
   this very input; a target may be a fixed multiple worse, never more.

   With score conditioning (attention, version 2): one reference run is one sample of the rounding,
   not its bound. Where a computation is ill-conditioned (softmax over large scores) a correct
   target's rounding can land several times further from the oracle than the reference's did, so
   the budget also holds the first-order bound ``C`` on the error that rounding the scores to ``D``
   forces (``attention_score_conditioning``), element by element:
   ``|target - oracle64| <= MULTIPLE[D] * (max|reference_in_D - oracle64| + C) + FLOOR[D]``.
   A score ``s_ij = scale * q_i . k_j`` computed in ``D`` (any summation order, pre-scaled or not)
   is off by at most ``e_ij = (d + 3) * u_D * scale * sum_l |q_il k_jl|`` (``u_D`` the unit roundoff:
   ``d`` products and sums, the scaling, and a pre-scaling of q and k). To first order the softmax
   passes a score error ``delta`` on as ``dw_ij = w_ij (delta_ij - sum_l w_il delta_il)`` and
   ``dout_ic = sum_j w_ij delta_ij (v_jc - out_ic)``, so
   ``C_out = (w * e) @ |v| + sum_j (w * e)_ij |out_i|`` and ``C_w = w * (e + sum_l (w * e)_il)``,
   with ``w``, ``out`` the float64 oracle's. At unit scores ``C`` is far below the floor (the rule is
   what it was); at scores x1e3 it is what float32 cannot resolve, and a scale or formula bug is
   still orders of magnitude beyond it.
2. Direct rule, where no same-dtype reference run exists (e.g. comparing two forms inside the
   reference): ``|actual - oracle64| <= ATOL[D] + RTOL[D] * |oracle64|`` elementwise.

Change a constant only with a new ``TOLERANCE_VERSION`` and a reason in the changelog below.

Changelog:
- 1: initial table. float32 floors ~ a few ulps at unit scale; half types from their epsilon.
- 2: differential rule with score conditioning (``conditioning=`` argument, computed by
  ``attention_score_conditioning``) for attention outputs and weights. Version 1 flagged correct
  float32 kernels (torch SDPA math 5 of 100 quick-profile seeds, the README's example 10 of 40
  thorough ones) at scores x1e3, where the float32 rounding of the scores, amplified by the
  softmax, exceeds twice the one reference run's error. The table is unchanged. Calibration:
  ``python -m benchmarks calibration`` (docs/PERFORMANCE.md).
"""

import math
from dataclasses import dataclass

import torch

TOLERANCE_VERSION = "2"


@dataclass(frozen=True)
class DtypeTolerance:
    """Constants for one dtype: differential multiple and floor, direct rtol and atol."""

    multiple: float
    floor: float
    rtol: float
    atol: float


TABLE: dict[torch.dtype, DtypeTolerance] = {
    torch.float64: DtypeTolerance(multiple=2.0, floor=1e-12, rtol=1e-10, atol=1e-12),
    torch.float32: DtypeTolerance(multiple=2.0, floor=1e-5, rtol=1e-5, atol=1e-5),
    torch.float16: DtypeTolerance(multiple=2.0, floor=1e-3, rtol=1e-2, atol=1e-3),
    torch.bfloat16: DtypeTolerance(multiple=2.0, floor=1e-2, rtol=5e-2, atol=1e-2),
}


def tolerance_for(dtype: torch.dtype) -> DtypeTolerance:
    """The constants for ``dtype``; unknown dtypes are an error, never a silent default."""
    if dtype not in TABLE:
        raise ValueError(f"argument 'dtype': expected one of {sorted(map(str, TABLE))}, got {dtype}")
    return TABLE[dtype]


@dataclass(frozen=True)
class Comparison:
    """Outcome of one comparison: the measured error, the allowed error, and the verdict."""

    measured: float
    allowed: float
    rule: str
    nonfinite: str = ""  # where NaN/Inf made the error infinite (then ``measured`` is inf)

    @property
    def ok(self) -> bool:
        return self.measured <= self.allowed

    def describe(self) -> str:
        """One line: the measured and allowed error, or which side held NaN/Inf."""
        if self.nonfinite:
            return (
                f"error not finite: {self.nonfinite} (finite values may differ by at most "
                f"{self.allowed:.3e}; {self.rule}, v{TOLERANCE_VERSION})"
            )
        verdict = "within" if self.ok else "exceeds"
        return (
            f"max error {self.measured:.3e} {verdict} allowed {self.allowed:.3e} "
            f"({self.rule}, v{TOLERANCE_VERSION})"
        )


def _nonfinite_where(actual: torch.Tensor, expected: torch.Tensor) -> str:
    """``"3 of 24 entries NaN/Inf in the value, 1 in the expected value"`` (the sides that have any)."""
    pairs = ((actual, "value"), (expected, "expected"))
    sides = [(int((~torch.isfinite(t)).sum()), name) for t, name in pairs]
    found = [f"{n} in the {name}" for n, name in sides if n]
    return f"NaN/Inf entries of {actual.numel()}: " + ", ".join(found or ["none (overflow)"])


def max_abs_error(actual: torch.Tensor, oracle: torch.Tensor) -> float:
    """Largest absolute difference in float64; NaN or Inf anywhere gives ``inf``."""
    if actual.shape != oracle.shape:
        raise ValueError(
            f"argument 'actual': expected shape {tuple(oracle.shape)}, got {tuple(actual.shape)}"
        )
    diff = (actual.detach().to(torch.float64).cpu() - oracle.detach().to(torch.float64).cpu()).abs()
    if diff.numel() == 0:
        return 0.0
    if not bool(torch.isfinite(diff).all()):
        return float("inf")
    return float(diff.max())


def unit_roundoff(dtype: torch.dtype) -> float:
    """Half the machine epsilon of ``dtype``: the largest relative error of one rounding."""
    tolerance_for(dtype)  # unknown dtypes are an error
    return float(torch.finfo(dtype).eps) / 2


def attention_score_conditioning(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    weights64: torch.Tensor,
    out64: torch.Tensor,
    *,
    scale: float,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """First-order bounds (``C_out``, ``C_w``) on the attention output and weights errors that rounding
    the scores ``scale * q k^T`` to ``dtype`` forces, from the float64 oracle's ``weights64`` and
    ``out64`` (see the module docstring, rule 1 with score conditioning). Shapes: q [..., nq, d],
    k [..., nk, d], v [..., nk, dv]; results like ``out64`` and ``weights64``, float64 on the CPU.

    Claims: attention.formula (the tolerance its differential check is judged with).
    """
    u = unit_roundoff(dtype)
    qa, ka, va = (t.detach().to(device="cpu", dtype=torch.float64).abs() for t in (q, k, v))
    w = weights64.detach().to(device="cpu", dtype=torch.float64).nan_to_num(0.0)
    out = out64.detach().to(device="cpu", dtype=torch.float64).abs()
    score_error = (q.shape[-1] + 3) * u * abs(scale) * (qa @ ka.transpose(-2, -1))
    we = w * score_error
    spread = we.sum(dim=-1, keepdim=True)
    return we @ va + spread * out, w * (score_error + spread)


def differential(
    actual: torch.Tensor,
    oracle64: torch.Tensor,
    reference_same_dtype: torch.Tensor,
    *,
    conditioning: torch.Tensor | None = None,
) -> Comparison:
    """Rule 1: the target's error against a fixed multiple of the reference's own error in that dtype.

    The dtype is the one the reference ran in (the dtype the target was asked to compute in), so a target
    that returns a lower precision than asked is not judged by that precision's looser constants.
    ``conditioning`` (broadcastable to ``oracle64``; e.g. from ``attention_score_conditioning``) adds the
    error the dtype's rounding of an ill-conditioned intermediate forces, element by element; the worst
    element (largest excess over its own budget) is reported.
    """
    tol = tolerance_for(reference_same_dtype.dtype)
    baseline = max_abs_error(reference_same_dtype, oracle64)
    if not math.isfinite(baseline):
        # The reference itself overflowed in this dtype: no finite error budget can be derived from it,
        # so the target is judged by the direct rule instead of being allowed an infinite error.
        fallback = direct(actual, oracle64)
        return Comparison(
            fallback.measured, fallback.allowed, f"{fallback.rule} (reference non-finite in {actual.dtype})"
        )
    measured = max_abs_error(actual, oracle64)  # shape check; inf when anything is non-finite
    where = "" if math.isfinite(measured) else _nonfinite_where(actual, oracle64)
    if conditioning is None:
        allowed = tol.multiple * baseline + tol.floor
        rule = f"differential {tol.multiple}x ref + {tol.floor:g}"
        return Comparison(measured, allowed, rule, nonfinite=where)
    rule = f"differential {tol.multiple}x (ref + score conditioning) + {tol.floor:g}"
    cond = conditioning.detach().to(device="cpu", dtype=torch.float64).expand(oracle64.shape)
    bound = tol.multiple * (baseline + cond) + tol.floor
    if oracle64.numel() == 0:
        return Comparison(0.0, tol.floor, rule)
    if not math.isfinite(measured):
        return Comparison(measured, float(bound.min()), rule, nonfinite=where)
    diff = (actual.detach().to(torch.float64).cpu() - oracle64.detach().to(torch.float64).cpu()).abs()
    worst = int(torch.argmax((diff - bound).flatten()))
    return Comparison(float(diff.flatten()[worst]), float(bound.flatten()[worst]), rule)


def direct(actual: torch.Tensor, oracle64: torch.Tensor) -> Comparison:
    """Rule 2: elementwise ``atol + rtol * |oracle|``; reports the worst excess as a ratio-free pair."""
    tol = tolerance_for(actual.dtype)
    a = actual.detach().to(torch.float64).cpu()
    o = oracle64.detach().to(torch.float64).cpu()
    if a.shape != o.shape:
        raise ValueError(f"argument 'actual': expected shape {tuple(o.shape)}, got {tuple(a.shape)}")
    if a.numel() == 0:
        return Comparison(0.0, tol.atol, "direct")
    bound = tol.atol + tol.rtol * o.abs()
    diff = (a - o).abs()
    if not bool(torch.isfinite(diff).all()):
        finite = bound[torch.isfinite(bound)]  # a NaN expected entry has no bound: not "allowed nan"
        allowed = float(finite.min()) if finite.numel() else tol.atol
        rule = f"direct atol {tol.atol:g} + rtol {tol.rtol:g}"
        return Comparison(float("inf"), allowed, rule, nonfinite=_nonfinite_where(a, o))
    worst = int(torch.argmax(diff - bound))
    return Comparison(
        float(diff.flatten()[worst]),
        float(bound.flatten()[worst]),
        f"direct atol {tol.atol:g} + rtol {tol.rtol:g}",
    )


def assert_close(actual: torch.Tensor, oracle64: torch.Tensor, what: str = "value") -> None:
    """Test helper: raise ``AssertionError`` with the comparison when the direct rule fails."""
    result = direct(actual, oracle64)
    if not result.ok:
        raise AssertionError(f"{what}: {result.describe()}")


def assert_differs(actual: torch.Tensor, other: torch.Tensor, what: str = "value") -> None:
    """Test helper: raise unless the two differ somewhere by more than the direct rule allows.

    The counterpart of ``assert_close`` for properties that must break (a mutant, a refuted claim):
    a difference within rounding does not count as a difference.
    """
    result = direct(actual, other.to(torch.float64))
    if result.ok:
        raise AssertionError(f"{what}: expected a difference beyond tolerance, got {result.describe()}")
