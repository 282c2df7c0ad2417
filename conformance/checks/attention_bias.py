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
Each check is not-applicable, naming the reason, when the declaration rules its feature out.
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.checks.attention import SHAPES, run_attention
from transformer_conformance.checks.inputs import (
    SCORE_SCALE,
    AttnCase,
    aligned_causal_keep,
    attention_cases,
    query_positions,
    random_keep,
)
from transformer_conformance.context import CheckContext, FailureKind, NotApplicable
from transformer_conformance.reference.alibi import alibi_bias, alibi_slopes
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.grouped import grouped_attention
from transformer_conformance.reference.relative_bias import relative_bucket
from transformer_conformance.registry import check

ATTN = (Capability.ATTENTION,)
#: Head counts of the slope measurement: powers of two and not (the recipe differs).
SLOPE_HEADS: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
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


def fit_heads(ctx: CheckContext, case: AttnCase, index: int = 0) -> tuple[AttnCase, int]:
    """(case, kv heads): with a declared ``num_kv_heads`` the head count becomes ``kv * (1..3)``."""
    kv = ctx.architecture.num_kv_heads
    if kv is None:
        return case, case.h
    h = kv * (1 + index % 3)
    return AttnCase(case.b, h, case.nq, case.nk, case.d, case.dv), kv


def positions(ctx: CheckContext, case: AttnCase) -> tuple[Tensor, Tensor]:
    """Query and key positions of ``case`` under the declared causal alignment."""
    qpos = torch.tensor(
        query_positions(case.nq, case.nk, ctx.conventions.causal_alignment), device=ctx.device
    )
    return qpos, torch.arange(case.nk, device=ctx.device)


def relative_table(ctx: CheckContext, h: int) -> Tensor:
    """The target's relative-bias table ``[relative_buckets, h]`` (float64), or NotApplicable."""
    method = getattr(ctx.adapter, TABLE_METHOD, None)
    if method is None:
        raise NotApplicable(
            f"target {ctx.adapter.name!r} has no {TABLE_METHOD}(num_heads, device, dtype) method: its "
            "relative bias table cannot be read"
        )
    table = ctx.call(method, h, ctx.device, ctx.dtype)
    ctx.expect_shape(f"relative bias table for {h} heads", table, (ctx.architecture.relative_buckets, h))
    return torch.as_tensor(table).detach().to(torch.float64)


def declared_bias(ctx: CheckContext, case: AttnCase, table: Tensor | None = None) -> Tensor | None:
    """The declared additive bias ``[h, nq, nk]`` (float64) of ``case``; None without one."""
    arch = ctx.architecture
    qpos, kpos = positions(ctx, case)
    if arch.positions == "alibi":
        return alibi_bias(alibi_slopes(case.h).to(ctx.device), qpos, kpos)
    if arch.positions == "relative":
        table = relative_table(ctx, case.h) if table is None else table
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
    kwargs = {"mapping": arch.kv_mapping, "scale": arch.attn_scale, "softcap": arch.attn_softcap}
    b64 = None if bias is None else bias.double()
    out64, w64 = grouped_attention(q.double(), k.double(), v.double(), keep, b64, **kwargs)  # type: ignore[arg-type]
    same = None if bias is None else bias.to(q.dtype)
    out, w = grouped_attention(q, k, v, keep, same, **kwargs)  # type: ignore[arg-type]
    return out64, w64, out, w


def bias_differential(ctx: CheckContext, what: str) -> None:
    """Outputs (and weights) match the oracle with the declared bias: no mask, a random mask, and
    ``is_causal`` (in the declared alignment) where every query sees a key."""
    arch = ctx.architecture
    for i, base in enumerate(attention_cases(ctx)):
        case, kv = fit_heads(ctx, base, i)
        q, k, v = grouped_qkv(ctx, case, kv)
        bias = declared_bias(ctx, case)
        variants: list[tuple[str, Tensor | None, bool]] = [
            ("no mask", None, False),
            ("random mask", random_keep(ctx, case, fully_masked_row=False), False),
        ]
        if case.nq <= case.nk:
            variants.append(
                (
                    "is_causal",
                    aligned_causal_keep(ctx, case.nq, case.nk, ctx.conventions.causal_alignment),
                    True,
                )
            )
        for label, keep, causal in variants:
            out, weights = run_attention(ctx, case, q, k, v, None if causal else keep, is_causal=causal)
            out64, w64, same, wsame = oracle(arch, q, k, v, keep, bias)
            where = f"{what}, {label} [{case.describe()} kv_heads={kv}]"
            ctx.compare(f"output with {where}", out, out64, same)
            if weights is not None:
                ctx.compare(f"weights with {where}", weights, w64, wsame)


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


def measured_weights(ctx: CheckContext, case: AttnCase, kv: int, q: Tensor) -> Tensor:
    """The target's weight rows ``[b, h, nq, nk]`` read black box: values are one-hot (v = I, dv = nk),
    so output row i is weight row i (works whether or not the target returns weights)."""
    k = ctx.randn(case.b, kv, case.nk, case.d)
    v = (
        torch.eye(case.nk, dtype=ctx.dtype, device=ctx.device)
        .expand(case.b, kv, case.nk, case.nk)
        .contiguous()
    )
    wide = AttnCase(case.b, case.h, case.nq, case.nk, case.d, case.nk)
    out, _ = run_attention(ctx, wide, q, k, v, None)
    return out.double()


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
    equal the standard geometric ones for 1, 2, 3, 4, 6 and 8 heads (non-powers of two included).
    Not applicable unless positions='alibi' is declared for the attention."""
    require_positions(ctx, "alibi")
    d = 4
    for i, heads in enumerate(SLOPE_HEADS):
        case, kv = fit_heads(ctx, AttnCase(2, heads, 4, 6, d, d), i)
        q = torch.zeros(case.b, case.h, case.nq, case.d, dtype=ctx.dtype, device=ctx.device)
        weights = measured_weights(ctx, case, kv, q)
        ctx.expect_finite(f"weight rows with zero queries [{case.describe()}]", weights)
        if bool((weights <= 0).any()):
            ctx.fail(
                FailureKind.PROPERTY, f"a weight is <= 0 with zero queries and no mask [{case.describe()}]"
            )
        measured = weights.log().diff(dim=-1)
        expected = alibi_slopes(case.h).to(ctx.device)[None, :, None, None].expand_as(measured)
        got = ", ".join(f"{x:.4g}" for x in measured[0, :, 0, 0].tolist())
        ctx.compare_direct(
            f"measured slopes per head ({got}) vs the standard ALiBi slopes for {case.h} heads "
            f"({', '.join(f'{x:.4g}' for x in alibi_slopes(case.h).tolist())})",
            measured.to(ctx.dtype),
            expected,
        )


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
    a constant per row; B[i, j] - B[i, j - 1] depends on j - i only (a relative bias), and for random
    q, k, v the target's output is softmax(capped scaled scores + B) v (the bias is additive, the same
    for every input). Not applicable unless positions='relative' is declared for the attention."""
    arch = require_positions(ctx, "relative")
    for i, base in enumerate(attention_cases(ctx)):
        base = AttnCase(base.b, base.h, base.nq, max(base.nk, 2), base.d, base.dv)
        case, kv = fit_heads(ctx, base, i)
        zero = torch.zeros(case.b, case.h, case.nq, case.d, dtype=ctx.dtype, device=ctx.device)
        weights = measured_weights(ctx, case, kv, zero)
        ctx.expect_finite(f"weight rows with zero queries [{case.describe()}]", weights)
        if bool((weights <= 0).any()):
            ctx.fail(
                FailureKind.PROPERTY, f"a weight is <= 0 with zero queries and no mask [{case.describe()}]"
            )
        recovered = weights.log()  # B + a constant per row
        step = recovered.diff(dim=-1)  # [b, h, nq, nk - 1]
        if case.nq > 1:
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
            q.double(),
            k.double(),
            v.double(),
            None,
            recovered[:1],
            mapping=arch.kv_mapping,
            scale=arch.attn_scale,
            softcap=arch.attn_softcap,
        )
        ctx.compare_direct(
            f"output vs softmax(scores + the bias measured with zero queries) v "
            f"[{case.describe()} kv_heads={kv}]",
            out,
            expected,
        )


@check(
    "attention.softcap.bounded",
    claims=("scoring.softcap-bounds-weights",),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def softcap_bounded(ctx: CheckContext) -> None:
    """With a declared soft-cap c, scores scaled by 1e3 (far past the cap) still give every key a weight
    of at least exp(-2c) times the row's largest (times exp of the declared bias difference): capped
    scores lie in [-c, c], so no key is ignored however large the scores. Weights are read black box
    (one-hot values). Not applicable without a declared attn_softcap."""
    arch = ctx.architecture
    cap = arch.attn_softcap
    if cap is None:
        raise NotApplicable(f"target {ctx.adapter.name!r} declares no attn_softcap for its attention")
    for i, base in enumerate(attention_cases(ctx)):
        case, kv = fit_heads(ctx, base, i)
        q = ctx.randn(case.b, case.h, case.nq, case.d, scale=SCORE_SCALE)
        weights = measured_weights(ctx, case, kv, q)
        ctx.expect_finite(f"weight rows with scores x{SCORE_SCALE:g} [{case.describe()}]", weights)
        bias = declared_bias(ctx, case)
        spread = torch.zeros(1, dtype=torch.float64, device=ctx.device)
        if bias is not None:
            spread = bias - bias.amax(dim=-1, keepdim=True)  # B_j - max B <= 0
        floor = torch.exp(-2 * cap + spread).expand_as(weights)
        ratio = weights / weights.amax(dim=-1, keepdim=True)
        ctx.compare_direct(
            f"soft-cap {cap:g}: weight / its row's largest vs max(that, exp(-2c + bias difference)) with "
            f"scores x{SCORE_SCALE:g} (a weight below the bound: the cap does not bound the scores) "
            f"[{case.describe()}]",
            ratio.to(ctx.dtype),
            torch.maximum(ratio, floor),
        )
