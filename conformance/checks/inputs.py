"""Shared adversarial inputs for the component checks.

Every generator draws from ``ctx`` (seeded per check), so a rerun with the same seed sees the same
inputs. The fixed cases come first and are deliberately awkward: ``num_q != num_k`` both ways, length 1,
odd head widths (5, 7), fully masked rows, left and right padding, huge or NaN pad contents. Drawn
cases follow (``search_cases``: ``ctx.examples`` of them drawn by hypothesis, a failure shrunk to a
minimal case, ``conformance/search.py``), with small sizes so the whole component suite stays fast
(the ``kernel`` profile draws block-boundary sizes instead).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import Tensor

from transformer_conformance.context import CheckContext, NotApplicable
from transformer_conformance.reference.masks import causal_mask, padding_mask_from_lengths
from transformer_conformance.search import search
from transformer_conformance.strategies import Example, attention_example

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


def case_of(example: Example) -> AttnCase:
    """The attention sizes of a drawn or fixed example."""
    return AttnCase(example["b"], example["h"], example["nq"], example["nk"], example["d"], example["dv"])


def case_example(case: AttnCase) -> Example:
    """An example of ``case``'s sizes (its ``data`` seed is set by the driver)."""
    return {"b": case.b, "h": case.h, "nq": case.nq, "nk": case.nk, "d": case.d, "dv": case.dv}


def fixed_cases(*, square: bool = False, value_width_differs: bool = False) -> list[AttnCase]:
    """The fixed adversarial cases (``square``: nq == nk only, plus a 7 x 7 one; ``value_width_differs``:
    d_v = d + 2)."""
    fixed = [c for c in FIXED_CASES if not square or c.nq == c.nk]
    if square:
        fixed.append(AttnCase(2, 2, 7, 7, 7, 7))
    if value_width_differs:
        fixed = [AttnCase(c.b, c.h, c.nq, c.nk, c.d, c.d + 2) for c in fixed]
    return fixed


def search_cases(
    ctx: CheckContext,
    prop: Callable[[AttnCase], None],
    *,
    square: bool = False,
    value_width_differs: bool = False,
    fixed: list[AttnCase] | None = None,
    examples: int | None = None,
) -> None:
    """Run ``prop`` on the fixed adversarial cases (or ``fixed``), then on attention sizes drawn by
    hypothesis (``ctx.examples`` unless ``examples``; block-boundary sizes under the ``kernel``
    profile); a failure is shrunk to the smallest sizes that show it (``conformance/search.py``)."""
    if fixed is None:
        fixed = fixed_cases(square=square, value_width_differs=value_width_differs)
    strategy = attention_example(
        kernel=ctx.profile.kernel, square=square, value_width_differs=value_width_differs
    )
    search_examples(ctx, lambda ex: prop(case_of(ex)), [case_example(c) for c in fixed], strategy, examples)


def search_examples(
    ctx: CheckContext,
    prop: Callable[[Example], None],
    fixed: list[Example],
    strategy: "st.SearchStrategy[Example]",
    examples: int | None = None,
) -> None:
    """``search.search`` (the fixed examples, then drawn ones) for a property of a whole example; an
    attention example's head widths are fitted to the target's ``supported_d_heads``
    (``fit_widths``)."""
    if ctx.conventions.supported_d_heads:
        fixed = [fit_widths(ctx, example) for example in fixed]
        strategy = strategy.map(lambda example: fit_widths(ctx, example))
    search(ctx, prop, fixed=fixed, strategy=strategy, examples=examples)


def supported_width(ctx: CheckContext, width: int) -> int:
    """The declared head width (``Conventions.supported_d_heads``) standing for a drawn ``width``
    (``width`` itself when none is declared): the declared widths taken in turn."""
    widths = sorted(set(ctx.conventions.supported_d_heads))
    return widths[width % len(widths)] if widths else width


def fit_widths(ctx: CheckContext, example: Example) -> Example:
    """``example`` with its attention head widths ``d``/``dv`` replaced by declared ones; a value width
    that differs from the key width stays different, on the same side (NotApplicable when a single
    width is declared); other examples unchanged."""
    widths = sorted(set(ctx.conventions.supported_d_heads))
    if "d" not in example or not widths:
        return example
    d = int(example["d"])
    dv = int(example["dv"]) if "dv" in example else d
    if dv == d:
        fitted = supported_width(ctx, d)
        return {**example, "d": fitted, "dv": fitted}
    pairs = [(a, b) for a in widths for b in widths if a != b and (a < b) == (d < dv)]
    if not pairs:
        raise NotApplicable(
            f"target {ctx.adapter.name!r} declares supported_d_heads={ctx.conventions.supported_d_heads}: "
            "a value width other than the key width cannot be drawn"
        )
    d, dv = pairs[(d + dv) % len(pairs)]
    return {**example, "d": d, "dv": dv}


def cut_points(n: int) -> list[int]:
    """Key positions 1..n-1 to cut a causal sequence at: all of them for short sequences, else the
    ends, the middle and both sides of every block boundary (multiples of 64)."""
    if n <= 17:
        return list(range(1, n))
    picks = {1, 2, n // 2, n - 2, n - 1}
    for edge in range(64, n, 64):
        picks |= {edge - 1, edge, edge + 1}
    return sorted(p for p in picks if 1 <= p < n)


def probe_rows(n: int) -> list[int]:
    """Query rows 0..n-1 to probe one at a time: all of them for short sequences, else row 0 and the
    rows of ``cut_points``."""
    return [0, *cut_points(n)]


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
