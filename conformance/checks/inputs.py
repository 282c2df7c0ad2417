"""Shared adversarial inputs for the component checks.

Every generator draws from ``ctx`` (seeded per check), so a rerun with the same seed sees the same
inputs. The fixed cases come first and are deliberately awkward: ``num_q != num_k`` both ways, length 1,
odd head widths (5, 7), fully masked rows, left and right padding, huge or NaN pad contents. Random
cases follow, ``ctx.examples`` of them, with small sizes so the whole component suite stays fast.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from transformer_conformance.context import CheckContext, NotApplicable
from transformer_conformance.reference.masks import causal_mask, padding_mask_from_lengths

#: Finite pad contents far beyond any real activation (in float16 the largest finite value is used).
HUGE = 1e10
#: Factor applied to queries to scale every score by 1e3 (the claim's adversarial case).
SCORE_SCALE = 1e3


@dataclass(frozen=True)
class AttnCase:
    """Sizes of one attention call: q [b, h, nq, d], k [b, h, nk, d], v [b, h, nk, dv]."""

    b: int
    h: int
    nq: int
    nk: int
    d: int
    dv: int

    def describe(self) -> str:
        """Short text for failure messages."""
        return f"b={self.b} h={self.h} nq={self.nq} nk={self.nk} d={self.d} dv={self.dv}"


#: Fixed adversarial cases (d_v == d_k): nq < nk, nq > nk, length 1, odd widths, a square case.
FIXED_CASES: tuple[AttnCase, ...] = (
    AttnCase(2, 2, 3, 5, 5, 5),
    AttnCase(1, 1, 1, 1, 7, 7),
    AttnCase(2, 3, 6, 4, 7, 7),
    AttnCase(1, 2, 5, 5, 5, 5),
    AttnCase(2, 1, 1, 6, 3, 3),
)


def _draw(ctx: CheckContext, low: int, high: int) -> int:
    """One integer in ``[low, high]`` from the check's generator."""
    return int(torch.randint(low, high + 1, (1,), generator=ctx.generator))


def attention_cases(
    ctx: CheckContext, *, square: bool = False, value_width_differs: bool = False
) -> list[AttnCase]:
    """Fixed adversarial cases plus ``ctx.examples`` random ones (``square``: nq == nk only)."""
    cases = [c for c in FIXED_CASES if not square or c.nq == c.nk]
    if square:
        cases.append(AttnCase(2, 2, 7, 7, 7, 7))
    for _ in range(ctx.examples):
        nk = _draw(ctx, 1, 9)
        nq = nk if square else _draw(ctx, 1, 9)
        d = _draw(ctx, 1, 9)
        cases.append(AttnCase(_draw(ctx, 1, 3), _draw(ctx, 1, 3), nq, nk, d, d))
    if value_width_differs:
        cases = [AttnCase(c.b, c.h, c.nq, c.nk, c.d, c.d + 2) for c in cases]
    return cases


def qkv(
    ctx: CheckContext, case: AttnCase, *, dtype: torch.dtype | None = None, score_scale: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Random q, k, v for ``case``; ``score_scale`` multiplies q (hence every score)."""
    q = ctx.randn(case.b, case.h, case.nq, case.d, dtype=dtype, scale=score_scale)
    k = ctx.randn(case.b, case.h, case.nk, case.d, dtype=dtype)
    v = ctx.randn(case.b, case.h, case.nk, case.dv, dtype=dtype)
    return q, k, v


def random_keep(
    ctx: CheckContext, case: AttnCase, *, fully_masked_row: bool, per_head: bool = False
) -> Tensor:
    """Canonical keep-mask [b, h|1, nq, nk] (True = may attend), about half visible.

    With ``fully_masked_row`` the last query row of sample 0 sees no key at all; every other row keeps
    at least one visible key.
    """
    heads = case.h if per_head else 1
    keep = torch.rand(case.b, heads, case.nq, case.nk, generator=ctx.generator) < 0.5
    anchor = torch.randint(0, case.nk, (case.b, heads, case.nq, 1), generator=ctx.generator)
    keep.scatter_(-1, anchor, True)
    if fully_masked_row:
        keep[0, :, -1, :] = False
    return keep.to(ctx.device)


def padding_keep(ctx: CheckContext, batch: int, length: int, *, side: str) -> Tensor:
    """Canonical padding mask [batch, length] (True = real token): one full row, others 1..length real."""
    lengths = torch.randint(1, length + 1, (batch,), generator=ctx.generator)
    lengths[0] = length
    if batch > 1:
        lengths[1] = max(1, length // 2)
    return padding_mask_from_lengths(lengths, length, side=side).to(ctx.device)  # type: ignore[arg-type]


def huge_value(dtype: torch.dtype) -> float:
    """``HUGE`` where the dtype can hold it, else the dtype's largest finite value / 4."""
    return min(HUGE, float(torch.finfo(dtype).max) / 4)


def fill_where(x: Tensor, hidden: Tensor, value: float) -> Tensor:
    """A copy of ``x`` [..., n, d] with rows where ``hidden`` [..., n] is True set to ``value``."""
    return torch.where(hidden.unsqueeze(-1), torch.full_like(x, value), x)


def aligned_causal_keep(ctx: CheckContext, nq: int, nk: int, alignment: str) -> Tensor:
    """Canonical causal keep-mask [nq, nk] in the given alignment, on ``ctx.device``."""
    return causal_mask(nq, nk, alignment=alignment, device=ctx.device)  # type: ignore[arg-type]


def query_positions(nq: int, nk: int, alignment: str) -> list[int]:
    """Absolute position of every query under ``alignment`` (bottom-right: nk - nq + i; top-left: i)."""
    offset = nk - nq if alignment == "bottom-right" else 0
    return [offset + i for i in range(nq)]


def half_dtypes(ctx: CheckContext) -> list[torch.dtype]:
    """float16 / bfloat16 among the target's declared dtypes; NotApplicable when it declares neither."""
    found = [dt for dt in (torch.float16, torch.bfloat16) if dt in ctx.conventions.dtypes]
    if not found:
        raise NotApplicable(f"target {ctx.adapter.name!r} declares no float16/bfloat16 support")
    return found


def permutation(ctx: CheckContext, n: int) -> Tensor:
    """A random permutation of ``range(n)`` that moves something whenever ``n > 1``."""
    perm = torch.randperm(n, generator=ctx.generator)
    if n > 1 and bool((perm == torch.arange(n)).all()):
        perm = torch.roll(perm, 1)
    return perm.to(ctx.device)


def require_zero_policy(ctx: CheckContext) -> None:
    """NotApplicable unless the target declares the project policy for fully masked rows ("zero")."""
    declared = ctx.conventions.fully_masked_row
    if declared != "zero":
        raise NotApplicable(
            f"target {ctx.adapter.name!r} declares fully_masked_row={declared!r}, not the project "
            "policy 'zero' (its declared behaviour is judged by the '.declared' checks)"
        )


def require_isolated_nonfinite(ctx: CheckContext) -> None:
    """NotApplicable when the target declares that non-finite pad contents may reach real positions
    (``Conventions.nonfinite_pads == "leak"``): the NaN-pad checks judge the declared guarantee."""
    if ctx.conventions.nonfinite_pads != "isolated":
        raise NotApplicable(
            f"target {ctx.adapter.name!r} declares nonfinite_pads={ctx.conventions.nonfinite_pads!r}: NaN "
            "pad contents may reach real positions (finite ones are judged by the padding-invariance checks)"
        )
