"""Checks of scaled dot-product attention (``Capability.ATTENTION``): shapes, weights, formula.

Masks are built canonically (True = may attend) and converted with ``ctx.to_target_mask``. The
oracle is ``reference.attention.scaled_dot_product_attention`` run in float64 and, for the
differential rule, in the target's dtype. Rows whose query sees no key follow the target's declared
``fully_masked_row`` convention and are judged only by ``attention.fully-masked-row``.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.checks.declared import require_notes_scoring
from transformer_conformance.checks.inputs import (
    FIXED_CASES,
    SCORE_SCALE,
    AttnCase,
    half_dtypes,
    qkv,
    random_keep,
    require_zero_policy,
    search_cases,
)
from transformer_conformance.context import CheckContext, FailureKind, NotApplicable
from transformer_conformance.evidence import attached, attention_slice
from transformer_conformance.reference import tolerance
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.masks import additive_mask
from transformer_conformance.registry import check

ATTN = (Capability.ATTENTION,)
SHAPES = "attention.shapes"
#: The formula check. Checks that can judge their claim only against the oracle's values depend on it,
#: so a formula bug is reported under the formula's claims and those checks show ``blocked``.
DIFFERENTIAL = "attention.differential"
#: Sequence length of the long self-attention case of ``attention.weights.shape`` (the pattern must
#: keep growing as L * L past the small cases).
LONG = 40


# -- helpers shared with masks.py --------------------------------------------------------------
def run_attention(
    ctx: CheckContext,
    case: AttnCase,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    keep: Tensor | None,
    *,
    is_causal: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Call the target's attention with the canonical ``keep`` mask; check output (and weights) shapes."""
    ctx.record(case=case.describe(), q=q, k=k, v=v, keep=keep, is_causal=is_causal)
    result = ctx.call(ctx.adapter.attention, q, k, v, mask=ctx.to_target_mask(keep), is_causal=is_causal)
    if not isinstance(result, tuple) or len(result) != 2:
        ctx.fail(
            FailureKind.SHAPE, f"attention returned {type(result).__name__}, expected (out, weights|None)"
        )
    out, weights = result
    ctx.expect_shape(f"output [{case.describe()}]", out, (case.b, case.h, case.nq, case.dv))
    ctx.expect_dtype("output", out, q.dtype)
    if not ctx.conventions.returns_weights:
        return out, None
    ctx.expect_shape(f"weights [{case.describe()}]", weights, (case.b, case.h, case.nq, case.nk))
    return out, weights


def weights_evidence(
    weights: Tensor | None, w64: Tensor, where: str, keep: Tensor | None = None
) -> tuple[Callable[[], dict[str, Any]], ...]:
    """The builder of the ``attention`` evidence (target vs oracle weights, and the canonical ``keep``
    mask) for ``evidence.attached``; none when the target returns no weights."""
    if weights is None or weights.shape != w64.shape:
        return ()
    return (lambda: attention_slice(weights, w64, where, keep),)


def need_weights(ctx: CheckContext, weights: Tensor | None) -> Tensor:
    """The returned weights, or NotApplicable when the target declares it returns none."""
    if weights is None:
        raise NotApplicable(f"target {ctx.adapter.name!r} declares returns_weights=False")
    return weights


def oracle(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Reference (out64, weights64, out_same_dtype, weights_same_dtype) for the canonical mask."""
    out64, w64 = scaled_dot_product_attention(q.double(), k.double(), v.double(), mask)
    out, w = scaled_dot_product_attention(q, k, v, mask)
    return out64, w64, out, w


def live_rows(keep: Tensor | None, case: AttnCase, device: torch.device) -> Tensor:
    """[b, h, nq] True where the query sees at least one key (every row when there is no mask)."""
    if keep is None:
        return torch.ones(case.b, case.h, case.nq, dtype=torch.bool, device=device)
    return keep.expand(case.b, case.h, case.nq, case.nk).any(dim=-1)


def compare_rows(
    ctx: CheckContext, what: str, actual: Tensor, oracle64: Tensor, same: Tensor, rows: Tensor
) -> None:
    """Differential comparison restricted to the selected query rows."""
    ctx.compare(what, actual[rows], oracle64[rows], same[rows])


def masks_for(ctx: CheckContext, case: AttnCase) -> list[Tensor | None]:
    """No mask, a broadcast [b,1,nq,nk] mask and a per-head mask (no fully masked rows)."""
    return [
        None,
        random_keep(ctx, case, fully_masked_row=False),
        random_keep(ctx, case, fully_masked_row=False, per_head=True),
    ]


# -- structural --------------------------------------------------------------------------------
@check(SHAPES, claims=("attention.shapes",), needs=ATTN)
def shapes(ctx: CheckContext) -> None:
    """Output is [b, h, num_q, d_v] in the input dtype, weights (if returned) [b, h, num_q, num_k],
    for num_q != num_k both ways, length 1 and odd head widths."""

    def prop(case: AttnCase) -> None:
        q, k, v = qkv(ctx, case)
        for keep in (None, random_keep(ctx, case, fully_masked_row=False)):
            run_attention(ctx, case, q, k, v, keep)

    search_cases(ctx, prop)


@check(
    "attention.weights.shape",
    claims=("attention.pattern-quadratic",),
    needs=ATTN,
    depends_on=(SHAPES,),
)
def weights_shape(ctx: CheckContext) -> None:
    """The returned pattern holds exactly num_q * num_k weights per head and sample ([b, h, num_q,
    num_k]; L * L for self-attention over L positions), also for a sequence longer than the small
    cases (``LONG`` positions: a blockwise kernel that returns one key block of weights is caught).
    Not applicable to a target that declares it returns no weights: the pattern is then not
    observable."""
    if not ctx.conventions.returns_weights:
        raise NotApplicable(f"target {ctx.adapter.name!r} declares returns_weights=False")

    def prop(case: AttnCase) -> None:
        for each in (case, AttnCase(case.b, case.h, case.nk, case.nk, case.d, case.dv)):  # and L x L
            q, k, v = qkv(ctx, each)
            _, weights = run_attention(ctx, each, q, k, v, None)
            w = need_weights(ctx, weights)
            per_head = w.numel() // (each.b * each.h)
            if per_head != each.nq * each.nk:
                ctx.fail(
                    FailureKind.SHAPE,
                    f"pattern holds {per_head} weights per head, expected {each.nq} * {each.nk} "
                    f"[{each.describe()}]",
                )

    search_cases(ctx, prop, fixed=[*FIXED_CASES, AttnCase(1, 2, LONG, LONG, 8, 8)])


@check("attention.shapes.value-width", claims=("attention.shapes",), needs=ATTN, depends_on=(SHAPES,))
def value_width(ctx: CheckContext) -> None:
    """d_v != d_k is allowed: the output takes the width of V, and each output column is the one the
    target itself computes from a d_v == d_k slice of V holding that column (output columns are
    independent of each other, so this needs no formula: a formula bug is judged elsewhere)."""

    def prop(case: AttnCase) -> None:
        q, k, v = qkv(ctx, case)
        out, _ = run_attention(ctx, case, q, k, v, None)
        narrow = AttnCase(case.b, case.h, case.nq, case.nk, case.d, case.d)
        last = case.dv - case.d
        for first in sorted({*range(0, last + 1, case.d), last}):  # d-wide slices covering every column
            part, _ = run_attention(ctx, narrow, q, k, v[..., first : first + case.d].contiguous(), None)
            ctx.compare_direct(
                f"output columns {first}..{first + case.d - 1} vs the call with those columns of V "
                f"[{case.describe()}]",
                out[..., first : first + case.d],
                part.double(),
                dims=("batch", "head", "query", "feature"),
                coords={3: range(first, first + case.d)},
            )

    search_cases(ctx, prop, value_width_differs=True)


@check("attention.weights.range", claims=("attention.weights.range",), needs=ATTN, depends_on=(SHAPES,))
def weights_range(ctx: CheckContext) -> None:
    """Every weight lies in [0, 1], also with masks and with scores scaled by 1e3."""

    def prop(case: AttnCase) -> None:
        for scale in (1.0, SCORE_SCALE):
            q, k, v = qkv(ctx, case, score_scale=scale)
            for keep in masks_for(ctx, case):
                _, weights = run_attention(ctx, case, q, k, v, keep)
                w = need_weights(ctx, weights)
                ctx.expect_finite("weights", w)
                ctx.compare_direct("weights clamped to [0, 1]", w, w.double().clamp(0.0, 1.0))

    search_cases(ctx, prop)


@check(
    "attention.weights.rows-sum-to-one",
    claims=("attention.weights.rows-sum-to-one", "attention.weights.column-layout"),
    needs=ATTN,
    depends_on=(SHAPES,),
)
def rows_sum_to_one(ctx: CheckContext) -> None:
    """In the [num_q, num_k] layout each query row with at least one visible key sums to 1."""

    def prop(case: AttnCase) -> None:
        q, k, v = qkv(ctx, case)
        for keep in [*masks_for(ctx, case), random_keep(ctx, case, fully_masked_row=True)]:
            _, weights = run_attention(ctx, case, q, k, v, keep)
            w = need_weights(ctx, weights)
            rows = live_rows(keep, case, w.device)
            sums = w.double().sum(dim=-1)[rows]
            ctx.compare_direct(
                f"row sums of the weights [{case.describe()}]",
                sums.to(w.dtype),
                torch.ones_like(sums),
                dims=("batch", "head", "query"),
                coords={0: rows.nonzero().tolist()},
            )

    search_cases(ctx, prop)


@check(
    "attention.convex-combination", claims=("attention.convex-combination",), needs=ATTN, depends_on=(SHAPES,)
)
def convex_combination(ctx: CheckContext) -> None:
    """Each output coordinate lies between the smallest and largest visible value in that coordinate
    (works without weights), for unit and x1e3 scores."""

    def prop(case: AttnCase) -> None:
        for scale in (1.0, SCORE_SCALE):
            q, k, v = qkv(ctx, case, score_scale=scale)
            for keep in masks_for(ctx, case):
                out, _ = run_attention(ctx, case, q, k, v, keep)
                ctx.expect_finite("output", out)
                check_in_hull(ctx, case, out, v, keep)

    search_cases(ctx, prop)


def check_in_hull(ctx: CheckContext, case: AttnCase, out: Tensor, v: Tensor, keep: Tensor | None) -> None:
    """Output rows (with a visible key) inside the per-coordinate [min, max] of the visible values."""
    full = (
        torch.ones(case.b, case.h, case.nq, case.nk, dtype=torch.bool, device=v.device)
        if keep is None
        else keep.expand(case.b, case.h, case.nq, case.nk)
    )
    v64 = v.double().unsqueeze(-3)  # [b, h, 1, nk, dv]
    vis = full.unsqueeze(-1)
    lo = torch.where(vis, v64, torch.full_like(v64, float("inf"))).amin(dim=-2)
    hi = torch.where(vis, v64, torch.full_like(v64, float("-inf"))).amax(dim=-2)
    rows = live_rows(keep, case, v.device)
    clamped = torch.minimum(torch.maximum(out.double(), lo), hi)
    ctx.compare_direct(
        f"output clamped to the hull of visible values [{case.describe()}]",
        out[rows],
        clamped[rows],
        dims=("batch", "head", "query", "feature"),
        coords={0: rows.nonzero().tolist()},
    )


class MaskedRowRun(NamedTuple):
    """One attention call whose mask leaves a query row without any visible key."""

    q: Tensor
    k: Tensor
    v: Tensor
    keep: Tensor
    out: Tensor
    weights: Tensor | None
    rows: Tensor  # [b, h, nq] True where the query sees a key


def _masked_row_case(ctx: CheckContext, case: AttnCase) -> MaskedRowRun:
    """Run one case with a fully masked query row; rows with a visible key must stay finite (their
    values are the formula's business, judged by ``attention.differential``)."""
    q, k, v = qkv(ctx, case)
    keep = random_keep(ctx, case, fully_masked_row=True)
    out, weights = run_attention(ctx, case, q, k, v, keep)
    rows = live_rows(keep, case, out.device)
    ctx.expect_finite("output rows with a visible key", out[rows])
    return MaskedRowRun(q, k, v, keep, out, weights, rows)


@check("attention.fully-masked-row", claims=("attention.fully-masked-row",), needs=ATTN, depends_on=(SHAPES,))
def fully_masked_row(ctx: CheckContext) -> None:
    """Project policy: a query that sees no key gets weights and an output row of exactly 0 (no NaN),
    with a boolean mask and, where the target takes one (``attention_additive``), a 0/-inf additive
    mask; the other rows stay finite (their values are judged by the formula check, not here). Not
    applicable to a target declaring another convention (``attention.fully-masked-row.declared``
    judges that one)."""
    require_zero_policy(ctx)
    additive = getattr(ctx.adapter, "attention_additive", None)

    def prop(case: AttnCase) -> None:
        r = _masked_row_case(ctx, case)
        dead = ~r.rows
        results: list[tuple[str, Tensor, Tensor | None]] = [("boolean mask", r.out, r.weights)]
        if additive is not None:
            bias = additive_mask(r.keep, dtype=r.q.dtype)
            ctx.record(bias=bias)
            out_a, weights_a = ctx.call(additive, r.q, r.k, r.v, bias=bias)
            ctx.expect_shape(f"output, additive mask [{case.describe()}]", out_a, r.out.shape)
            results.append(("additive -inf mask", out_a, weights_a))
        for how, o, w in results:
            dead_out = o[dead]
            if not bool((dead_out == 0).all()):
                ctx.fail(
                    FailureKind.PROPERTY,
                    f"fully masked row ({how}): output row holds "
                    f"{dead_out[dead_out != 0][:4].tolist()}, the policy is exactly 0 [{case.describe()}]",
                )
            if w is not None and not bool((w[dead] == 0).all()):
                ctx.fail(FailureKind.PROPERTY, f"fully masked row ({how}): weights are not all exactly 0")

    search_cases(ctx, prop)


@check(
    "attention.fully-masked-row.declared",
    claims=("attention.weights.rows-sum-to-one",),
    needs=ATTN,
    depends_on=(SHAPES,),
)
def fully_masked_row_declared(ctx: CheckContext) -> None:
    """A target declaring a convention other than the project's zero policy (nan: NaN row; uniform: the
    mean of all values, weights 1/num_k) follows it, while every row with a visible key still sums
    to 1. Credits only the row-sum claim: such a target does not meet the
    policy ``attention.fully-masked-row``. Not applicable under 'zero' (judged by the policy check) or
    without returned weights."""
    convention = ctx.conventions.fully_masked_row
    if convention == "zero":
        raise NotApplicable("target declares the project policy 'zero' (see attention.fully-masked-row)")
    if not ctx.conventions.returns_weights:
        raise NotApplicable(f"target {ctx.adapter.name!r} declares returns_weights=False")

    def prop(case: AttnCase) -> None:
        r = _masked_row_case(ctx, case)
        w = need_weights(ctx, r.weights)
        dead = ~r.rows
        dead_out, dead_w = r.out[dead], w[dead]
        if convention == "nan":
            if not bool(torch.isnan(dead_out).all()) or not bool(torch.isnan(dead_w).all()):
                ctx.fail(
                    FailureKind.PROPERTY,
                    f"fully masked row: declared 'nan', output row holds {dead_out[:4].tolist()} "
                    f"[{case.describe()}]",
                )
        else:
            if convention == "uniform":
                mean = r.v.double().mean(dim=-2, keepdim=True).expand(case.b, case.h, case.nq, case.dv)
                ctx.compare_direct(
                    "fully masked row: declared 'uniform' (mean of the values)", dead_out, mean[dead]
                )
            else:
                ctx.compare_direct(
                    "fully masked row: declared zero output (x-transformers)",
                    dead_out,
                    torch.zeros_like(dead_out, dtype=torch.float64),
                )
            ctx.compare_direct(
                "fully masked row weights: 1/num_k", dead_w, torch.full_like(dead_w.double(), 1 / case.nk)
            )
        sums = w.double().sum(dim=-1)[r.rows]
        ctx.compare_direct(
            f"row sums with a visible key [{case.describe()}]", sums.to(w.dtype), torch.ones_like(sums)
        )

    search_cases(ctx, prop)


# -- differential ------------------------------------------------------------------------------
@check(
    DIFFERENTIAL,
    claims=("attention.formula", "attention.score-is-dot-product", "attention.scale.sqrt-dk"),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="differential",
)
def differential(ctx: CheckContext) -> None:
    """Output (and weights) match softmax(q k^T / sqrt(d_k)) v of the float64 oracle, with and without
    masks, for unit scores and scores scaled by 1e3 (differential tolerance rule with score
    conditioning: the error the working dtype's rounding of large scores forces is allowed).
    Not applicable to a declared position bias, scale or soft-cap (judged against their oracle)."""
    require_notes_scoring(ctx)
    differential_at_scales(ctx, (1.0, SCORE_SCALE))


def differential_at_scales(ctx: CheckContext, scales: tuple[float, ...]) -> None:
    """The body of ``attention.differential`` for the given score scales (the calibration benchmark,
    ``benchmarks/calibration.py``, runs it over more of them)."""

    def prop(case: AttnCase) -> None:
        for scale in scales:
            q, k, v = qkv(ctx, case, score_scale=scale)
            for keep in masks_for(ctx, case):
                out, weights = run_attention(ctx, case, q, k, v, keep)
                out64, w64, same, wsame = oracle(q, k, v, keep)
                c_out, c_w = tolerance.attention_score_conditioning(
                    q, k, v, w64, out64, scale=case.d**-0.5, dtype=q.dtype
                )
                what = f"[{case.describe()}, score x{scale:g}]"
                with attached(*weights_evidence(weights, w64, case.describe(), keep)):
                    ctx.compare(f"output {what}", out, out64, same, conditioning=c_out)
                    if weights is not None:
                        ctx.compare(f"weights {what}", weights, w64, wsame, conditioning=c_w)

    search_cases(ctx, prop)


@check(
    "attention.half-precision",
    claims=("attention.half-precision-softmax",),
    needs=ATTN,
    depends_on=(SHAPES, DIFFERENTIAL),
    kind="differential",
)
def half_precision(ctx: CheckContext) -> None:
    """In each declared float16/bfloat16: unit scores match the oracle (differential rule against the
    reference in that dtype); scores x1e3 give finite outputs inside the hull of the values. Depends on
    the formula check: against the oracle a formula bug would show here too."""
    require_notes_scoring(ctx)
    dtypes = half_dtypes(ctx)

    def prop(case: AttnCase) -> None:
        for dtype in dtypes:
            q, k, v = qkv(ctx, case, dtype=dtype)
            keep = random_keep(ctx, case, fully_masked_row=False)
            out, _ = run_attention(ctx, case, q, k, v, keep)
            out64, _, same, _ = oracle(q, k, v, keep)
            ctx.compare(f"{dtype} output [{case.describe()}]", out, out64, same)
            q_big = q * SCORE_SCALE
            out, weights = run_attention(ctx, case, q_big, k, v, keep)
            ctx.expect_finite(f"{dtype} output with scores x1e3", out)
            if weights is not None:
                ctx.expect_finite(f"{dtype} weights with scores x1e3", weights)
            check_in_hull(ctx, case, out, v, keep)

    search_cases(ctx, prop, fixed=list(FIXED_CASES[:3]), examples=max(1, ctx.examples // 2))


# -- metamorphic -------------------------------------------------------------------------------
@check(
    "attention.determinism",
    claims=("determinism.eval",),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def determinism(ctx: CheckContext) -> None:
    """The same inputs give the same outputs on repeated calls (three calls; equal up to the direct
    tolerance: a BLAS may legitimately block a reduction differently on a thread's first call, which
    moves the last bit, while dropout left on or uninitialised memory moves far more)."""

    def prop(case: AttnCase) -> None:
        q, k, v = qkv(ctx, case)
        keep = random_keep(ctx, case, fully_masked_row=False)
        first, _ = run_attention(ctx, case, q, k, v, keep)
        for again in (2, 3):
            later, _ = run_attention(ctx, case, q, k, v, keep)
            ctx.compare_direct(f"call {again} vs call 1 [{case.describe()}]", later, first.double())

    search_cases(ctx, prop, fixed=list(FIXED_CASES[:3]), examples=max(1, ctx.examples // 2))


@check(
    "attention.batch-independence",
    claims=("batch.independence",),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def batch_independence(ctx: CheckContext) -> None:
    """Sample 0's output does not change when the other samples change, nor when it runs alone."""

    def prop(drawn: AttnCase) -> None:
        case = AttnCase(3, drawn.h, drawn.nq, drawn.nk, drawn.d, drawn.dv)
        q, k, v = qkv(ctx, case)
        keep = random_keep(ctx, case, fully_masked_row=False)
        out, _ = run_attention(ctx, case, q, k, v, keep)
        q2, k2, v2 = qkv(ctx, case, score_scale=3.0)
        q2[0], k2[0], v2[0] = q[0], k[0], v[0]
        out2, _ = run_attention(ctx, case, q2, k2, v2, keep)
        ctx.compare_direct("sample 0 after changing samples 1..2", out2[0], out[0].double())
        single = AttnCase(1, case.h, case.nq, case.nk, case.d, case.dv)
        alone, _ = run_attention(ctx, single, q[:1], k[:1], v[:1], keep[:1])
        ctx.compare_direct("sample 0 run alone vs in a batch", alone[0], out[0].double())

    search_cases(ctx, prop)
