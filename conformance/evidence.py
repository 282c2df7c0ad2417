"""Evidence: the small arrays a failed check keeps so that the HTML report can draw the failure.

A ``CheckFailure`` carries ``evidence``, a JSON-serialisable dict with at most one entry per kind:

- ``errors``: a sample of elementwise absolute errors against the tolerance (``ctx.compare*``);
- ``attention``: one (batch, head) slice of the target's attention weights and of the oracle's;
- ``influence``: which outputs move (rows) when which input positions are perturbed (columns), with
  the positions each output may see;
- ``steps``: the error of every decoding step (or chunk) against the error it was allowed.

Every array is capped (``MAX_SAMPLE`` values, ``MAX_SIDE`` x ``MAX_SIDE`` matrices) and rounded to
four significant digits, so a JSON report with many failures stays small. Non-finite values are
stored as ``None`` (JSON has no NaN). Checks attach the payloads that need more than one comparison
with ``attached``: the payload is built only when a failure passes through, never on a pass.
"""

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.reference import tolerance

#: Most elementwise errors kept per failure.
MAX_SAMPLE = 400
#: Most rows and columns kept of a matrix (attention weights, influence map).
MAX_SIDE = 32


def number(x: float) -> float | None:
    """``x`` to four significant digits; None for NaN/Inf."""
    x = float(x)
    return float(f"{x:.4g}") if math.isfinite(x) else None


def numbers(values: Tensor) -> list[float | None]:
    """A flat tensor as a list of rounded floats."""
    return [number(v) for v in values.detach().to(torch.float64).cpu().flatten().tolist()]


def matrix(values: Tensor) -> list[list[float | None]]:
    """A 2-D tensor (cut to ``MAX_SIDE`` x ``MAX_SIDE``) as nested lists of rounded floats."""
    m = values.detach().to(torch.float64).cpu()[:MAX_SIDE, :MAX_SIDE]
    return [numbers(row) for row in m]


def error_sample(actual: Tensor, expected64: Tensor, allowed: float | None, rule: str) -> dict[str, Any]:
    """``{"errors": ...}``: up to ``MAX_SAMPLE`` absolute errors |actual - expected| (the worst ones
    and an even spread of the rest) with the tolerance: one ``allowed`` bound (differential rule) or,
    when ``allowed`` is None, each element's own direct-rule bound ``atol + rtol * |expected|``."""
    a = actual.detach().to(torch.float64).cpu().flatten()
    o = expected64.detach().to(torch.float64).cpu().flatten()
    diff = (a - o).abs()
    if allowed is None:
        tol = tolerance.tolerance_for(actual.dtype)
        bound = tol.atol + tol.rtol * o.abs()
    else:
        bound = torch.full_like(o, allowed)
    excess = torch.nan_to_num(diff - bound, nan=math.inf)
    n = diff.numel()
    if n <= MAX_SAMPLE:
        index = torch.arange(n)
    else:
        worst = torch.topk(excess, MAX_SAMPLE // 2).indices
        spread = torch.linspace(0, n - 1, MAX_SAMPLE // 2).round().long()
        index = torch.unique(torch.cat([worst, spread]))
    payload: dict[str, Any] = {
        "rule": rule,
        "count": n,
        "exceeding": int((excess > 0).sum()),
        "nonfinite": int((~torch.isfinite(diff)).sum()),
        "abs_error": numbers(diff[index]),
    }
    if allowed is None:
        payload["bound"] = numbers(bound[index])
    else:
        payload["allowed"] = number(allowed)
    return {"errors": payload}


def attention_slice(
    target: Tensor, oracle64: Tensor, where: str = "", keep: Tensor | None = None
) -> dict[str, Any]:
    """``{"attention": ...}``: the (batch, head) slice of two [b, h, num_q, num_k] weight tensors where
    they differ most (first slice when they agree), as matrices; with the canonical ``keep`` mask
    (broadcastable to the weights) also which keys that slice may see."""
    t = target.detach().to(torch.float64).cpu()
    o = oracle64.detach().to(torch.float64).cpu()
    t4, o4 = t.reshape(-1, *t.shape[-2:]), o.reshape(-1, *o.shape[-2:])
    gap = torch.nan_to_num((t4 - o4).abs(), nan=math.inf).amax(dim=(-2, -1))
    flat = int(torch.argmax(gap)) if gap.numel() else 0
    heads = t.shape[-3] if t.dim() >= 3 else 1
    payload: dict[str, Any] = {
        "where": where,
        "batch": flat // heads,
        "head": flat % heads,
        "target": matrix(t4[flat]),
        "oracle": matrix(o4[flat]),
    }
    if keep is not None:
        visible = keep.detach().cpu().expand(t.shape).reshape(-1, *t.shape[-2:])[flat]
        payload["visible"] = [[bool(x) for x in row[:MAX_SIDE]] for row in visible[:MAX_SIDE].tolist()]
    return {"attention": payload}


def influence_map(
    outputs: Callable[[int], Tensor | None],
    base: Tensor,
    visible: Tensor,
    where: str,
    rows: str = "output position",
    cols: str = "perturbed input position",
) -> dict[str, Any]:
    """``{"influence": ...}``: entry (i, j) is the largest change of output position i when input
    position j alone is perturbed. ``outputs(j)`` returns the outputs [..., positions, features] after
    perturbing position j (None: skip); ``base`` the unperturbed ones; ``visible`` [rows, cols] True
    where output i may depend on input j. Also stores the direct-rule bound of the largest output as
    the change that still counts as "unchanged"."""
    n_rows, n_cols = min(int(visible.shape[0]), MAX_SIDE), min(int(visible.shape[1]), MAX_SIDE)
    b64 = base.detach().to(torch.float64).cpu()
    moved = torch.zeros(n_rows, n_cols, dtype=torch.float64)
    for j in range(n_cols):
        out = outputs(j)
        if out is None:
            continue
        delta = torch.nan_to_num((out.detach().to(torch.float64).cpu() - b64).abs(), nan=math.inf)
        per_row = delta.movedim(-2, 0).reshape(delta.shape[-2], -1).amax(dim=-1)
        moved[:, j] = per_row[:n_rows]
    tol = tolerance.tolerance_for(base.dtype)
    return {
        "influence": {
            "where": where,
            "rows": rows,
            "cols": cols,
            "moved": matrix(moved),
            "visible": [[bool(x) for x in row] for row in visible[:n_rows, :n_cols].cpu().tolist()],
            "unchanged_below": number(tol.atol + tol.rtol * float(b64.abs().max()) if b64.numel() else 0.0),
        }
    }


class StepErrors:
    """The direct-rule error of each decoding step or chunk, for the ``steps`` payload."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.labels: list[str] = []
        self.measured: list[float | None] = []
        self.allowed: list[float | None] = []

    def add(self, label: str, actual: Any, expected: Tensor, keep: Tensor | None = None) -> None:
        """Record one step (``keep``: only those positions count); a malformed output is skipped."""
        if not isinstance(actual, Tensor) or actual.shape != expected.shape:
            return
        if keep is not None:
            actual, expected = actual[keep], expected[keep]
        result = tolerance.direct(actual, expected.detach().to(torch.float64))
        self.labels.append(label)
        self.measured.append(number(result.measured))
        self.allowed.append(number(result.allowed))

    def payload(self) -> dict[str, Any]:
        """``{"steps": ...}``."""
        return {
            "steps": {
                "what": self.what,
                "labels": self.labels[:MAX_SAMPLE],
                "measured": self.measured[:MAX_SAMPLE],
                "allowed": self.allowed[:MAX_SAMPLE],
            }
        }


@contextmanager
def attached(*builders: Callable[[], dict[str, Any]]) -> Iterator[None]:
    """Add the payloads of ``builders`` to a check failure raised inside the block (built only then;
    a payload the failure already carries wins). A builder that itself fails is left out: evidence
    must never turn a failure into a harness error."""
    try:
        yield
    except Exception as exc:
        evidence = getattr(exc, "evidence", None)
        if isinstance(evidence, dict):
            for build in builders:
                try:
                    extra = build()
                except Exception:
                    continue
                for key, value in extra.items():
                    evidence.setdefault(key, value)
        raise


def run_steps(
    steps: StepErrors,
    pairs: Iterator[tuple[str, str, Any, Tensor, Tensor | None]],
    judge: Callable[[str, Any, Tensor, Tensor | None], None],
) -> None:
    """Judge each (label, what, actual, expected, keep) of ``pairs`` in order with ``judge(what, actual,
    expected, keep)``; after the first failure the remaining steps are still run (best effort) so that
    the ``steps`` payload covers every step, then that first failure is raised with it."""
    first: BaseException | None = None
    while True:
        try:
            label, what, actual, expected, keep = next(pairs)
        except StopIteration:
            break
        except Exception:
            if first is None:
                raise
            break
        steps.add(label, actual, expected, keep)
        if first is None:
            try:
                judge(what, actual, expected, keep)
            except Exception as exc:
                first = exc
    if first is not None:
        with attached(steps.payload):
            raise first


def worst_entry(
    actual: Tensor,
    expected64: Tensor,
    *,
    dims: tuple[str, ...] | None = None,
    coords: dict[int, Any] | None = None,
) -> dict[str, Any]:
    """The entry of ``actual`` farthest from ``expected64`` (NaN counts as farthest): its index (one
    value per dimension, named by ``dims`` when given; ``coords[d]`` maps position i of dimension d to
    its original index, or indices for a row of a row-selected tensor) and the target's value, the
    oracle's and their difference. Part of a failure's counterexample (``conformance/search.py``)."""
    a = actual.detach().to(torch.float64).cpu()
    o = expected64.detach().to(torch.float64).cpu()
    if a.numel() == 0:
        return {}
    diff = torch.nan_to_num((a - o).abs(), nan=math.inf)
    flat = int(torch.argmax(diff.flatten()))
    raw = [int(i) for i in torch.unravel_index(torch.tensor(flat), a.shape)] if a.dim() else []
    index: list[int] = []
    for d, i in enumerate(raw):
        mapped = list((coords or {}).get(d, []))
        original = mapped[i] if i < len(mapped) else i
        index += [int(x) for x in original] if isinstance(original, list | tuple) else [int(original)]
    entry: dict[str, Any] = {
        "index": index,
        "shape": list(a.shape),
        "target": number(float(a.flatten()[flat])),
        "oracle": number(float(o.flatten()[flat])),
        "difference": number(float(a.flatten()[flat] - o.flatten()[flat])),
    }
    if dims is not None and len(dims) == len(index):
        entry["dims"] = list(dims)
    return entry
