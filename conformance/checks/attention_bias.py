"""Checks of position biases and soft-capping declared for an attention function (``Capability.ATTENTION``).

A target declares, in the architecture of its attention (``Architecture``, adapter-wide or in
``capability_architectures[Capability.ATTENTION]``):

- ``positions="alibi"``: the function adds ``-slope_h * (i - j)`` to the score of query position ``i``
  and key position ``j``, with the standard geometric slopes of ``reference.alibi.alibi_slopes(h)``;
- ``positions="relative"``: it adds a learned T5 bias ``table[bucket(j - i), h]`` (``relative_buckets``,
  ``relative_max_distance``, ``relative_bidirectional``); the table is the target's own weight, read
  through the optional adapter method ``relative_bias_table(num_heads, device, dtype)`` -> ``[buckets,
  num_heads]`` (the differential check is not-applicable without it; the metamorphic one is not);
- ``attn_softcap``: scores are soft-capped (``cap * tanh(s / cap)``) before the bias.

Positions: key ``j`` is at ``j``; query ``i`` of ``nq`` over ``nk`` keys is at ``nk - nq + i`` under the
declared ``causal_alignment`` ``bottom-right`` (a query chunk at the end of its keys, as with a cache),
at ``i`` under ``top-left``. ALiBi does not depend on that offset (a constant per row), relative
buckets do. The oracle is ``reference.grouped.grouped_attention`` in float64 with the declared bias.
Inputs are drawn through the search driver (``inputs.search_examples``: the fixed adversarial cases,
then hypothesis draws, a failure shrunk); with a declared ``num_kv_heads`` each case has ``kv * g``
query heads over ``kv`` KV heads. Each check is not-applicable, naming the reason, when the declaration
rules its feature out.
"""

import math
from collections.abc import Callable, Sequence

import torch
from hypothesis import strategies as st
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.checks.attention import SHAPES, run_attention
from transformer_conformance.checks.inputs import (
    FIXED_CASES,
    SCORE_SCALE,
    AttnCase,
    aligned_causal_keep,
    case_example,
    case_of,
    query_positions,
    random_keep,
    search_examples,
)
from transformer_conformance.context import CheckContext, FailureKind, NotApplicable
from transformer_conformance.reference.alibi import alibi_bias, alibi_slopes
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.grouped import grouped_attention
from transformer_conformance.reference.relative_bias import relative_bucket
from transformer_conformance.registry import check
from transformer_conformance.strategies import KERNEL_GQA_RATIOS, Example, attention_example, sizes_example

ATTN = (Capability.ATTENTION,)
#: Head counts of the fixed slope measurements: powers of two and not (the recipe differs).
SLOPE_HEADS: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
#: Query heads per KV head with a declared ``num_kv_heads``.
GROUPS: tuple[int, ...] = (1, 2, 3)
#: Name of the optional adapter method returning the relative-bias table of the attention function.
TABLE_METHOD = "relative_bias_table"


def require_positions(ctx: CheckContext, kind: str) -> Architecture:
    """The declared attention architecture, or NotApplicable unless its positions are ``kind``."""
    arch = ctx.architecture
    if arch.positions != kind:
        raise NotApplicable(
            f"target {ctx.adapter.name!r} declares positions={arch.positions!r} for its attention, "
            f"not {kind!r}"
        )
    return arch


def search_bias_cases(
    ctx: CheckContext,
    prop: Callable[[AttnCase, int], None],
    *,
    fixed: Sequence[AttnCase] = FIXED_CASES,
    strategy: "st.SearchStrategy[Example] | None" = None,
    min_len: int = 1,
) -> None:
    """``prop(case, kv heads)`` on the ``fixed`` cases, then on cases drawn by hypothesis (shrunk on
    failure); with a declared ``num_kv_heads`` = kv the case has ``kv * g`` query heads, g cycling
    through ``GROUPS`` (drawn from it, or ``KERNEL_GQA_RATIOS`` under the kernel profile)."""
    kv = ctx.architecture.num_kv_heads
    ratios = KERNEL_GQA_RATIOS if ctx.profile.kernel else GROUPS

    def run(example: Example) -> None:
        case = case_of(example)
        if kv is None:
            prop(case, case.h)
        else:
            prop(AttnCase(case.b, kv * example["groups"], case.nq, case.nk, case.d, case.dv), kv)

    examples = [{**case_example(c), "groups": GROUPS[i % len(GROUPS)]} for i, c in enumerate(fixed)]
    if strategy is None:
        strategy = attention_example(
            kernel=ctx.profile.kernel, min_len=min_len, extras={"groups": st.sampled_from(ratios)}
        )
    search_examples(ctx, run, examples, strategy)


def positions(ctx: CheckContext, case: AttnCase) -> tuple[Tensor, Tensor]:
    """Query and key positions of ``case`` under the declared causal alignment."""
    qpos = torch.tensor(
        query_positions(case.nq, case.nk, ctx.conventions.causal_alignment), device=ctx.device
    )
    return qpos, torch.arange(case.nk, device=ctx.device)


def relative_table(ctx: CheckContext, h: int, dtype: torch.dtype | None = None) -> Tensor:
    """The target's relative-bias table ``[relative_buckets, h]`` read in ``dtype`` (the working one
    unless given) and returned in float64, or NotApplicable."""
    method = getattr(ctx.adapter, TABLE_METHOD, None)
    if method is None:
        raise NotApplicable(
            f"target {ctx.adapter.name!r} has no {TABLE_METHOD}(num_heads, device, dtype) method: its "
            "relative bias table cannot be read"
        )
    table = ctx.call(method, h, ctx.device, dtype or ctx.dtype)
    ctx.expect_shape(f"relative bias table for {h} heads", table, (ctx.architecture.relative_buckets, h))
    return torch.as_tensor(table).detach().to(torch.float64)


def declared_bias(ctx: CheckContext, case: AttnCase, dtype: torch.dtype | None = None) -> Tensor | None:
    """The declared additive bias ``[h, nq, nk]`` (float64) of ``case`` (a relative table read in
    ``dtype``); None without one.

    Claims: alibi.distance-only, relbias.distance-only.
    """
    arch = ctx.architecture
    qpos, kpos = positions(ctx, case)
    if arch.positions == "alibi":
        return alibi_bias(alibi_slopes(case.h).to(ctx.device), qpos, kpos)
    if arch.positions == "relative":
        table = relative_table(ctx, case.h, dtype).to(ctx.device)
        buckets = relative_bucket(
            kpos[None, :] - qpos[:, None],
            bidirectional=arch.relative_bidirectional,
            num_buckets=arch.relative_buckets,
            max_distance=arch.relative_max_distance,
        )
        return table[buckets].permute(2, 0, 1)
    return None


def grouped_qkv(
    ctx: CheckContext, case: AttnCase, kv: int, *, scale: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """q ``[b, h, nq, d]`` (times ``scale``), k and v ``[b, kv, nk, d|dv]``."""
    q = ctx.randn(case.b, case.h, case.nq, case.d, scale=scale)
    return q, ctx.randn(case.b, kv, case.nk, case.d), ctx.randn(case.b, kv, case.nk, case.dv)


def oracle(
    arch: Architecture, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, bias: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(out64, weights64, out, weights) of the grouped oracle with the declared scale, cap and bias."""
    b64 = None if bias is None else bias.double()
    out64, w64 = grouped_attention(
        q.double(), k.double(), v.double(), keep, b64,
        mapping=arch.kv_mapping, scale=arch.attn_scale, softcap=arch.attn_softcap,
    )  # fmt: skip
    same = None if bias is None else bias.to(q.dtype)
    out, w = grouped_attention(
        q, k, v, keep, same, mapping=arch.kv_mapping, scale=arch.attn_scale, softcap=arch.attn_softcap
    )
    return out64, w64, out, w


def bias_differential(ctx: CheckContext, what: str) -> None:
    """Outputs (and weights) match the oracle with the declared bias: no mask, a random mask, and
    ``is_causal`` (in the declared alignment) where every query sees a key."""
    arch = ctx.architecture
    alignment = ctx.conventions.causal_alignment

    def prop(case: AttnCase, kv: int) -> None:
        q, k, v = grouped_qkv(ctx, case, kv)
        bias = declared_bias(ctx, case)
        variants: list[tuple[str, Tensor | None, bool]] = [
            ("no mask", None, False),
            ("random mask", random_keep(ctx, case, fully_masked_row=False), False),
        ]
        if case.nq <= case.nk or alignment == "top-left":
            variants.append(("is_causal", aligned_causal_keep(ctx, case.nq, case.nk, alignment), True))
        for label, keep, causal in variants:
            out, weights = run_attention(ctx, case, q, k, v, None if causal else keep, is_causal=causal)
            out64, w64, same, wsame = oracle(arch, q, k, v, keep, bias)
            where = f"{what}, {label} [{case.describe()} kv_heads={kv}]"
            ctx.compare(f"output with {where}", out, out64, same)
            if weights is not None:
                ctx.compare(f"weights with {where}", weights, w64, wsame)

    search_bias_cases(ctx, prop)


@check(
    "attention.alibi.differential",
    claims=("alibi.distance-only", "alibi.slopes"),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="differential",
)
def alibi_differential(ctx: CheckContext) -> None:
    """With declared ALiBi positions the attention adds -slope_h * (i - j) with the standard slopes:
    output (and weights) match the float64 oracle without a mask, with a random mask and with
    is_causal. Not applicable unless positions='alibi' is declared for the attention."""
    require_positions(ctx, "alibi")
    bias_differential(ctx, "ALiBi bias")


def measured_weights(
    ctx: CheckContext, case: AttnCase, kv: int, q: Tensor, k: Tensor | None = None
) -> Tensor:
    """The target's weight rows ``[b, h, nq, nk]`` (for ``q`` and ``k``, random unless given) read black
    box: values are one-hot (v = I), so output row i is weight row i (works whether or not the target
    returns weights). The values are ``nk`` wide, or, with declared ``supported_d_heads``, ``case.dv``
    wide, read in column blocks."""
    k = ctx.randn(case.b, kv, case.nk, case.d).to(q.dtype) if k is None else k
    width = case.dv if ctx.conventions.supported_d_heads else case.nk
    eye = torch.eye(case.nk, dtype=q.dtype, device=ctx.device)
    blocks = []
    for start in range(0, case.nk, width):
        cols = eye[:, start : start + width]
        cols = torch.nn.functional.pad(cols, (0, width - cols.shape[1]))
        v = cols.expand(case.b, kv, case.nk, width).contiguous()
        wide = AttnCase(case.b, case.h, case.nq, case.nk, case.d, width)
        out, _ = run_attention(ctx, wide, q, k, v, None)
        blocks.append(torch.as_tensor(out).double()[..., : min(width, case.nk - start)])
    return torch.cat(blocks, dim=-1)


def require_positive(ctx: CheckContext, case: AttnCase, weights: Tensor, what: str) -> None:
    """PROPERTY failure when a weight read with ``what`` is not positive (softmax weights are)."""
    ctx.expect_finite(f"weight rows with {what} [{case.describe()}]", weights)
    if bool((weights <= 0).any()):
        ctx.fail(FailureKind.PROPERTY, f"a weight is <= 0 with {what} and no mask [{case.describe()}]")


@check(
    "attention.alibi.measured-slopes",
    claims=("alibi.measured-slopes", "alibi.slopes"),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def alibi_measured_slopes(ctx: CheckContext) -> None:
    """Black box: with zero queries and one-hot values the output rows are the weight rows, and
    log w[i, j + 1] - log w[i, j] is head h's slope for every query i and key j; the measured slopes
    equal the standard geometric ones (fixed cases with 1, 2, 3, 4, 6 and 8 heads, non-powers of two
    included, then drawn head counts up to 8). Not applicable unless positions='alibi' is declared."""
    require_positions(ctx, "alibi")

    def prop(case: AttnCase, kv: int) -> None:
        q = torch.zeros(case.b, case.h, case.nq, case.d, dtype=ctx.dtype, device=ctx.device)
        weights = measured_weights(ctx, case, kv, q)
        require_positive(ctx, case, weights, "zero queries")
        measured = weights.log().diff(dim=-1)
        slopes = alibi_slopes(case.h).to(ctx.device)
        got = ", ".join(f"{x:.4g}" for x in measured[0, :, 0, 0].tolist())
        ctx.compare_direct(
            f"measured slopes per head ({got}) vs the standard ALiBi slopes for {case.h} heads "
            f"({', '.join(f'{x:.4g}' for x in slopes.tolist())}) [{case.describe()} kv_heads={kv}]",
            measured.to(ctx.dtype),
            slopes[None, :, None, None].expand_as(measured),
        )

    fixed = [AttnCase(2, h, 1 + i % 4, 6, 4, 4) for i, h in enumerate(SLOPE_HEADS)]
    strategy = sizes_example(b=(1, 2), h=(1, 8), nq=(1, 4), nk=(2, 8), d=(1, 6), groups=(1, 3)).map(
        lambda e: {**e, "dv": e["d"]}
    )
    search_bias_cases(ctx, prop, fixed=fixed, strategy=strategy)


@check(
    "attention.alibi.order-aware",
    claims=("alibi.breaks-permutation-equivariance",),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def alibi_order_aware(ctx: CheckContext) -> None:
    """Self-attention with declared ALiBi is not permutation-equivariant: the target on the tokens
    (q, k, v rows together) permuted, minus its output rows permuted the same way, is what the declared
    bias makes it (zero for order-blind attention), judged by the differential rule against the float64
    oracle's same difference. An ALiBi target that drops or flattens its bias returns zero there and
    fails. Square cases, at least 2 tokens, a non-identity permutation drawn per example. Not applicable
    unless positions='alibi' is declared for the attention."""
    arch = require_positions(ctx, "alibi")

    def prop(case: AttnCase, kv: int) -> None:
        q, k, v = grouped_qkv(ctx, case, kv)
        perm = torch.randperm(case.nk, generator=ctx.generator)
        if bool((perm == torch.arange(case.nk)).all()):
            perm = perm.roll(1)
        perm = perm.to(ctx.device)
        bias = declared_bias(ctx, case)
        out, _ = run_attention(ctx, case, q, k, v, None)
        qp, kp, vp = q[..., perm, :], k[..., perm, :], v[..., perm, :]
        moved, _ = run_attention(ctx, case, qp, kp, vp, None)
        base64, _, base, _ = oracle(arch, q, k, v, None, bias)
        moved64, _, moved_same, _ = oracle(arch, qp, kp, vp, None, bias)
        ctx.compare(
            f"output on the tokens permuted by {perm.tolist()} minus the output rows permuted the same "
            f"way (ALiBi: not zero) [{case.describe()} kv_heads={kv}]",
            torch.as_tensor(moved) - torch.as_tensor(out)[..., perm, :],
            moved64 - base64[..., perm, :],
            moved_same - base[..., perm, :],
        )

    fixed = [AttnCase(c.b, c.h, max(c.nk, 2), max(c.nk, 2), c.d, c.dv) for c in FIXED_CASES]
    strategy = attention_example(
        kernel=ctx.profile.kernel, square=True, min_len=2, extras={"groups": st.sampled_from(GROUPS)}
    )
    search_bias_cases(ctx, prop, fixed=fixed, strategy=strategy)


@check(
    "attention.relbias.differential",
    claims=("relbias.buckets", "relbias.distance-only"),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="differential",
)
def relbias_differential(ctx: CheckContext) -> None:
    """With declared relative positions the attention adds table[bucket(j - i), h] of its own table
    (read with relative_bias_table) under the declared buckets, max distance and direction: output (and
    weights) match the float64 oracle without a mask, with a random mask and with is_causal. Not
    applicable unless positions='relative' is declared, or without relative_bias_table."""
    require_positions(ctx, "relative")
    bias_differential(ctx, "relative bias")


@check(
    "attention.relbias.additive",
    claims=("scoring.additive-bias", "relbias.distance-only"),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def relbias_additive(ctx: CheckContext) -> None:
    """Black box, no table needed: with zero queries the log-weights recover the target's bias B up to
    a constant per row; B[i, j] - B[i, j - 1] depends on j - i only (a relative bias), B is the same for
    every sample, and for random q, k, v the target's output is softmax(capped scaled scores + B) v (the
    bias is additive, the same for every input). Not applicable unless positions='relative' is
    declared for the attention."""
    arch = require_positions(ctx, "relative")

    def prop(case: AttnCase, kv: int) -> None:
        zero = torch.zeros(case.b, case.h, case.nq, case.d, dtype=ctx.dtype, device=ctx.device)
        weights = measured_weights(ctx, case, kv, zero)
        require_positive(ctx, case, weights, "zero queries")
        recovered = weights.log()  # B + a constant per row
        step = recovered.diff(dim=-1)  # [b, h, nq, nk - 1]
        if case.nq > 1 and case.nk > 2:
            ctx.compare_direct(
                f"bias steps B[i, j] - B[i, j - 1] vs B[i - 1, j - 1] - B[i - 1, j - 2] (a function of "
                f"j - i) [{case.describe()}]",
                step[..., 1:, 1:].to(ctx.dtype),
                step[..., :-1, :-1],
            )
        if case.b > 1:
            ctx.compare_direct(
                f"bias the same for every sample [{case.describe()}]",
                recovered[1:].to(ctx.dtype),
                recovered[:1].expand_as(recovered[1:]),
            )
        q, k, v = grouped_qkv(ctx, case, kv)
        out, _ = run_attention(ctx, case, q, k, v, None)
        expected, _ = grouped_attention(
            q.double(), k.double(), v.double(), None, recovered[:1],
            mapping=arch.kv_mapping, scale=arch.attn_scale, softcap=arch.attn_softcap,
        )  # fmt: skip
        ctx.compare_direct(
            f"output vs softmax(scores + the bias measured with zero queries) v "
            f"[{case.describe()} kv_heads={kv}]",
            out,
            expected,
        )

    fixed = [AttnCase(c.b, c.h, c.nq, max(c.nk, 2), c.d, c.dv) for c in FIXED_CASES]
    search_bias_cases(ctx, prop, fixed=fixed, min_len=2)


#: Headroom (in log units) kept between a checked weight ratio and the dtype's smallest normal number.
LOG_HEADROOM = 8.0


def softcap_dtype(ctx: CheckContext, cap: float) -> torch.dtype:
    """The dtype the soft-cap bound can be read in: the working one where exp(-c) is a normal number
    of it (with ``LOG_HEADROOM``), else float64 when the target declares it; NotApplicable otherwise."""
    for dtype in (ctx.dtype, torch.float64):
        if -cap > math.log(torch.finfo(dtype).tiny) + LOG_HEADROOM and (
            dtype == ctx.dtype or dtype in ctx.conventions.dtypes
        ):
            return dtype
    raise NotApplicable(
        f"target {ctx.adapter.name!r} declares attn_softcap={cap:g}: a weight ratio of exp(-c) is not "
        f"representable in {ctx.dtype} and float64 is not among its dtypes"
    )


@check(
    "attention.softcap.bounded",
    claims=("scoring.softcap-bounds-weights", "scoring.softcap"),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def softcap_bounded(ctx: CheckContext) -> None:
    """With a declared soft-cap c, non-negative scores scaled by 1e3 (far past the cap: q and k with
    non-negative entries) still give every key a weight of at least exp(-c) times the row's largest
    (times exp of the declared bias difference): capped scores lie in [0, c], so no key is ignored
    however large the scores. Key 0 is zero (score 0) while the others saturate, so a cap larger than
    the declared one breaks the bound too. Weights are read black box (one-hot values) and compared
    in log space (direct rule); where exp(-c) underflows the working dtype the check runs in float64.
    Not applicable without a declared attn_softcap."""
    cap = ctx.architecture.attn_softcap
    if cap is None:
        raise NotApplicable(f"target {ctx.adapter.name!r} declares no attn_softcap for its attention")
    dtype = softcap_dtype(ctx, cap)
    log_floor = math.log(torch.finfo(dtype).tiny) + LOG_HEADROOM

    def prop(case: AttnCase, kv: int) -> None:
        q = ctx.randn(case.b, case.h, case.nq, case.d, scale=SCORE_SCALE, dtype=dtype).abs()
        k = ctx.randn(case.b, kv, case.nk, case.d, dtype=dtype).abs()
        k[..., 0, :] = 0  # key 0 scores 0 and the others far past the cap: the bound is met tightly
        weights = measured_weights(ctx, case, kv, q, k)
        ctx.expect_finite(f"weight rows with scores x{SCORE_SCALE:g} [{case.describe()}]", weights)
        bias = declared_bias(ctx, case, dtype)
        spread = torch.zeros(case.h, case.nq, case.nk, dtype=torch.float64, device=ctx.device)
        if bias is not None:
            spread = bias - bias.amax(dim=-1, keepdim=True)  # B_j - max B <= 0
        bound = (-cap + spread).expand_as(weights)
        checked = bound > log_floor  # the bound is a normal number of the dtype there
        log_ratio = (weights / weights.amax(dim=-1, keepdim=True)).log()
        got = torch.where(checked, torch.minimum(log_ratio, bound), torch.zeros_like(bound))
        ctx.compare_direct(
            f"soft-cap {cap:g}: log(weight / its row's largest), floored at the bound -c + bias "
            f"difference, vs that bound, with non-negative scores x{SCORE_SCALE:g} (below the bound: the "
            f"cap does not bound the scores) [{case.describe()} kv_heads={kv}]",
            got.to(dtype),
            torch.where(checked, bound, torch.zeros_like(bound)),
        )

    search_bias_cases(ctx, prop)
