"""Checks of the architecture a target declares (``Adapter.architecture`` / ``architecture_for``).

Attention (``Capability.ATTENTION``): a declared ``num_kv_heads`` says the function takes grouped
key/value heads (q [b, h, n, d], k and v [b, num_kv_heads, n, d], h a multiple of num_kv_heads) under
the declared ``kv_mapping``; a declared ``attn_scale`` / ``attn_softcap`` replaces 1/sqrt(d_k) / adds
soft-capping; a declared ``sliding_window`` limits ``is_causal=True`` to the window. The oracle is
``reference.grouped.grouped_attention`` in float64. Each check is not-applicable, naming the reason,
when the declaration rules its feature out.

Models (``Capability.DECODER_LM``): positions that are relative (rotary, ALiBi, T5 buckets, none) or
counted from the first real token make a left-padded row's logits equal those of the row unpadded,
a black-box consequence of ``rotary.relative-dot-product`` that needs no weights.
"""

from collections.abc import Callable

import torch
from hypothesis import strategies as st
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.checks.attention import SHAPES
from transformer_conformance.checks.inputs import (
    FIXED_CASES,
    AttnCase,
    case_example,
    case_of,
    fixed_cases,
    probe_rows,
    query_positions,
    random_keep,
    search_cases,
    search_examples,
)
from transformer_conformance.context import CheckContext, FailureKind, NotApplicable
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.grouped import grouped_attention, repeat_kv, window_keep
from transformer_conformance.registry import check
from transformer_conformance.search import search
from transformer_conformance.strategies import KERNEL_GQA_RATIOS, Example, attention_example, shift_example

ATTN = (Capability.ATTENTION,)
LM = Capability.DECODER_LM
#: Query heads per KV head in the grouped cases (1: plain MHA, the one-group identity).
GROUPS: tuple[int, ...] = (1, 2, 3)


def _kv_heads(ctx: CheckContext) -> int:
    """The declared KV head count of the attention, or NotApplicable."""
    arch = ctx.architecture
    if arch.num_kv_heads is None:
        raise NotApplicable(
            f"target {ctx.adapter.name!r} declares no num_kv_heads for its attention "
            "(no grouped-query support)"
        )
    return arch.num_kv_heads


def _search_grouped(ctx: CheckContext, prop: Callable[[AttnCase, int], None]) -> None:
    """``prop(case with h query heads, num_kv_heads)`` for h = kv * g: the fixed cases with g cycling
    through ``GROUPS``, then cases drawn by hypothesis with g drawn from ``GROUPS`` (the ``kernel``
    profile: ``KERNEL_GQA_RATIOS``), shrunk on failure (``conformance/search.py``)."""
    kv = _kv_heads(ctx)
    ratios = KERNEL_GQA_RATIOS if ctx.profile.kernel else GROUPS

    def run(example: Example) -> None:
        base = case_of(example)
        prop(AttnCase(base.b, kv * example["groups"], base.nq, base.nk, base.d, base.dv), kv)

    fixed = [{**case_example(c), "groups": GROUPS[i % len(GROUPS)]} for i, c in enumerate(FIXED_CASES)]
    strategy = attention_example(kernel=ctx.profile.kernel, extras={"groups": st.sampled_from(ratios)})
    search_examples(ctx, run, fixed, strategy)


def _grouped_qkv(ctx: CheckContext, case: AttnCase, kv: int) -> tuple[Tensor, Tensor, Tensor]:
    q = ctx.randn(case.b, case.h, case.nq, case.d)
    k = ctx.randn(case.b, kv, case.nk, case.d)
    v = ctx.randn(case.b, kv, case.nk, case.dv)
    return q, k, v


def _call(
    ctx: CheckContext, case: AttnCase, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, is_causal: bool
) -> tuple[Tensor, Tensor | None]:
    ctx.record(case=case.describe(), q=q, k=k, v=v, keep=keep, is_causal=is_causal)
    result = ctx.call(ctx.adapter.attention, q, k, v, mask=ctx.to_target_mask(keep), is_causal=is_causal)
    if not isinstance(result, tuple) or len(result) != 2:
        ctx.fail(
            FailureKind.SHAPE, f"attention returned {type(result).__name__}, expected (out, weights|None)"
        )
    out, weights = result
    ctx.expect_shape(f"output [{case.describe()}]", out, (case.b, case.h, case.nq, case.dv))
    if not ctx.conventions.returns_weights:
        return out, None
    ctx.expect_shape(f"weights [{case.describe()}]", weights, (case.b, case.h, case.nq, case.nk))
    return out, weights


def _oracle(
    arch: Architecture, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(out64, weights64, out, weights) of ``grouped_attention`` under the declared architecture."""
    kwargs = {"mapping": arch.kv_mapping, "scale": arch.attn_scale, "softcap": arch.attn_softcap}
    out64, w64 = grouped_attention(q.double(), k.double(), v.double(), keep, **kwargs)  # type: ignore[arg-type]
    out, w = grouped_attention(q, k, v, keep, **kwargs)  # type: ignore[arg-type]
    return out64, w64, out, w


@check(
    "attention.gqa.differential",
    claims=("gqa.repeat-equivalence", "gqa.mqa-one-group"),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="differential",
)
def gqa_differential(ctx: CheckContext) -> None:
    """With the declared num_kv_heads KV heads and 1, 2 or 3 query heads per group, output (and weights)
    match the float64 grouped-query oracle under the declared kv_mapping, with and without a mask.
    Not applicable without a declared num_kv_heads."""

    def prop(case: AttnCase, kv: int) -> None:
        q, k, v = _grouped_qkv(ctx, case, kv)
        for keep in (None, random_keep(ctx, case, fully_masked_row=False)):
            out, weights = _call(ctx, case, q, k, v, keep, False)
            out64, w64, same, wsame = _oracle(ctx.architecture, q, k, v, keep)
            ctx.compare(f"grouped output [{case.describe()} kv_heads={kv}]", out, out64, same)
            if weights is not None:
                ctx.compare(f"grouped weights [{case.describe()} kv_heads={kv}]", weights, w64, wsame)

    _search_grouped(ctx, prop)


@check(
    "attention.gqa.repeat-equivalence",
    claims=("gqa.repeat-equivalence",),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def gqa_repeat_equivalence(ctx: CheckContext) -> None:
    """Black box: the target on grouped K/V equals the target on K/V with each head repeated for its
    query group (declared kv_mapping), i.e. plain multi-head attention. Not applicable without a
    declared num_kv_heads."""
    mapping = ctx.architecture.kv_mapping

    def prop(case: AttnCase, kv: int) -> None:
        if case.h == kv:
            return
        q, k, v = _grouped_qkv(ctx, case, kv)
        keep = random_keep(ctx, case, fully_masked_row=False)
        grouped, _ = _call(ctx, case, q, k, v, keep, False)
        full, _ = _call(
            ctx, case, q, repeat_kv(k, case.h, mapping), repeat_kv(v, case.h, mapping), keep, False
        )
        ctx.compare_direct(
            f"grouped K/V vs K/V repeated {mapping} [{case.describe()} kv_heads={kv}]", grouped, full.double()
        )

    _search_grouped(ctx, prop)


@check(
    "attention.scoring.declared",
    claims=("scoring.scale-override", "scoring.softcap"),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="differential",
)
def scoring_declared(ctx: CheckContext) -> None:
    """A declared score scale (e.g. 1 for T5) and logit soft-capping (Gemma 2) are what the target
    computes: outputs match the float64 oracle with that scale and cap, also for scores x30 (where the
    cap bites). Not applicable when neither is declared (attention.differential judges 1/sqrt(d_k))."""
    arch = ctx.architecture
    if arch.attn_scale is None and arch.attn_softcap is None:
        raise NotApplicable(f"target {ctx.adapter.name!r} declares neither attn_scale nor attn_softcap")
    if arch.positions in ("alibi", "relative"):
        raise NotApplicable(
            f"target {ctx.adapter.name!r} declares a {arch.positions} position bias with its scale/soft-cap "
            "(judged together by the attention.alibi/relbias checks)"
        )

    def prop(case: AttnCase) -> None:
        for factor in (1.0, 30.0):
            q = ctx.randn(case.b, case.h, case.nq, case.d, scale=factor)
            k, v = ctx.randn(case.b, case.h, case.nk, case.d), ctx.randn(case.b, case.h, case.nk, case.dv)
            keep = random_keep(ctx, case, fully_masked_row=False)
            out, weights = _call(ctx, case, q, k, v, keep, False)
            out64, w64, same, wsame = _oracle(arch, q, k, v, keep)
            ctx.compare(f"output, declared scale/softcap [{case.describe()} x{factor:g}]", out, out64, same)
            if weights is not None:
                ctx.compare(f"weights, declared scale/softcap [{case.describe()}]", weights, w64, wsame)

    search_cases(ctx, prop)


@check(
    "attention.window.differential",
    claims=("window.blind-outside", "window.full-when-wide"),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="differential",
)
def window_differential(ctx: CheckContext) -> None:
    """With a declared sliding window w, ``is_causal=True`` lets the query at position i see exactly the
    keys i - w < j <= i (positions in the declared causal alignment): output matches the windowed
    oracle and, black box, changing keys outside the window changes nothing. Not applicable without
    a declared sliding_window."""
    arch = ctx.architecture
    w = arch.sliding_window
    if w is None:
        raise NotApplicable(f"target {ctx.adapter.name!r} declares no sliding_window for its attention")
    alignment = ctx.conventions.causal_alignment

    def prop(case: AttnCase) -> None:
        q, k, v = (
            ctx.randn(case.b, case.h, n, d)
            for n, d in ((case.nq, case.d), (case.nk, case.d), (case.nk, case.dv))
        )
        qpos = torch.tensor(query_positions(case.nq, case.nk, alignment), device=ctx.device)
        keep = window_keep(qpos, torch.arange(case.nk, device=ctx.device), w)
        out, _ = _call(ctx, case, q, k, v, None, True)
        out64, _, same, _ = _oracle(arch, q, k, v, keep)
        ctx.compare(f"windowed causal output (w={w}) [{case.describe()}]", out, out64, same)
        for i in probe_rows(case.nq):
            outside = ~keep[i]
            outside[int(qpos[i]) + 1 :] = False  # the future is the causal checks' business
            if not bool(outside.any()):
                continue
            k2, v2 = k.clone(), v.clone()
            k2[..., outside, :] = ctx.randn(*k2[..., outside, :].shape, scale=10.0)
            v2[..., outside, :] = ctx.randn(*v2[..., outside, :].shape, scale=10.0)
            out2, _ = _call(ctx, case, q, k2, v2, None, True)
            ctx.compare_direct(
                f"query {i}: keys outside its window (w={w}) changed [{case.describe()}]",
                out2[..., i, :],
                out[..., i, :].double(),
            )

    wide = AttnCase(1, 2, w + 3, w + 3, 4, 4)
    search_cases(ctx, prop, square=True, fixed=[*fixed_cases(square=True), wide])


@check(
    "lm.positions.relative-shift",
    claims=("rotary.relative-dot-product", "lm.left-padding-position-ids"),
    needs=(LM,),
    depends_on=("lm.shape",),
    kind="metamorphic",
)
def lm_relative_shift(ctx: CheckContext) -> None:
    """decoder-only LM whose declared positions are relative (rotary, ALiBi, relative buckets, none) or
    counted from the first real token: left-padding each sample by its own 1..4 pads (a sample shifted
    less than the most is right-padded too) shifts every real token's slot but none of its logits (equal
    to the unpadded batch's). Not applicable to absolute positions counted in slots, where the shift
    legitimately changes the logits."""
    from transformer_conformance.checks.layers import same_rows
    from transformer_conformance.checks.models import _ids, _Pipeline

    arch = ctx.architecture
    if arch.positions == "absolute" and arch.position_ids == "slots":
        raise NotApplicable(
            f"target {ctx.adapter.name!r} declares absolute positions counted in slots: a shift moves them"
        )
    p = _Pipeline(ctx, LM)

    def prop(example: Example) -> None:
        b, n, pads = int(example["b"]), int(example["n"]), [int(k) for k in example["pads"]]
        ids = _ids(ctx, p.cfg, b, n)
        base = p.full(ids)
        # row i: pads[i] left pads, the real tokens, right pads up to the widest shift
        padded = torch.full((b, n + max(pads)), p.cfg.pad_id, dtype=ids.dtype, device=ctx.device)
        keep = torch.zeros_like(padded, dtype=torch.bool)
        for i, k in enumerate(pads):
            padded[i, k : k + n] = ids[i]
            keep[i, k : k + n] = True
        y = p.full(padded, keep)
        shifted = torch.stack([y[i, k : k + n] for i, k in enumerate(pads)])
        ctx.record(ids=padded, pad_mask=keep, unpadded=ids)
        same_rows(
            ctx,
            f"logits after {pads} left pads per sample (positions={arch.positions!r}, "
            f"ids={arch.position_ids!r}) vs the unpadded batch",
            shifted,
            base,
            None,
        )

    # every sample shifted by 1, then by 3; then batch, length and per-sample shifts drawn
    fixed = [{"b": 2, "n": 5, "pads": [k, k]} for k in (1, 3)]
    search(ctx, prop, fixed=fixed, strategy=shift_example(), examples=ctx.model_examples)
