"""Checks of attention masking (``Capability.ATTENTION``): exact zeros, padding, causality.

Causality is tested by perturbation: keys and values at positions a query may not see are replaced
by different (large) values, and that query's output must not move. The ``is_causal`` path follows
the target's declared ``causal_alignment``; the explicit-mask path is tested with both alignments
(the mask is built by the check, so any alignment must work).
"""

from functools import partial
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.checks.attention import (
    DIFFERENTIAL,
    SHAPES,
    compare_rows,
    need_weights,
    oracle,
    run_attention,
    weights_evidence,
)
from transformer_conformance.checks.declared import require_notes_scoring
from transformer_conformance.checks.inputs import (
    FIXED_CASES,
    SCORE_SCALE,
    AttnCase,
    aligned_causal_keep,
    case_example,
    case_of,
    cut_points,
    fill_where,
    huge_value,
    padding_keep,
    probe_rows,
    qkv,
    query_positions,
    random_keep,
    require_isolated_nonfinite,
    search_cases,
    search_examples,
)
from transformer_conformance.context import CheckContext, FailureKind, NotApplicable
from transformer_conformance.evidence import attached, attention_slice, influence_map
from transformer_conformance.reference import tolerance
from transformer_conformance.reference.masks import additive_mask
from transformer_conformance.registry import check
from transformer_conformance.strategies import (
    Example,
    attention_example,
    build_keep,
    combined_keep,
    mask_example,
)

ATTN = (Capability.ATTENTION,)
ALIGNMENTS = ("bottom-right", "top-left")


def require_additive_entry_point(ctx: CheckContext) -> Any:
    """The target's optional additive-mask entry point; not applicable to a target without one."""
    additive = getattr(ctx.adapter, "attention_additive", None)
    if additive is None:
        raise NotApplicable(
            f"target {ctx.adapter.name!r} has no additive-mask entry point (attention_additive)"
        )
    return additive


def compare_with_oracle(
    ctx: CheckContext,
    what: str,
    case: AttnCase,
    qkv_inputs: tuple[Tensor, Tensor, Tensor],
    keep: Tensor,
    out: Tensor,
    weights: Tensor | None,
) -> None:
    """Output (and weights, if returned) against the float64 oracle under ``keep``, on rows with a
    visible key."""
    out64, w64, same, wsame = oracle(*qkv_inputs, keep)
    rows = keep.any(dim=-1).expand(case.b, case.h, case.nq)
    with attached(*weights_evidence(weights, w64, f"{what} [{case.describe()}]", keep)):
        compare_rows(ctx, f"{what}: output [{case.describe()}]", out, out64, same, rows)
        if weights is not None:
            compare_rows(ctx, f"{what}: weights [{case.describe()}]", weights, w64, wsame, rows)


def attention_outputs(
    ctx: CheckContext, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, is_causal: bool
) -> Tensor | None:
    """The target's attention output for perturbed inputs, for evidence only: not recorded as the
    check's inputs, None when the target returns something other than (out, weights)."""
    result = ctx.call(ctx.adapter.attention, q, k, v, mask=ctx.to_target_mask(keep), is_causal=is_causal)
    if not isinstance(result, tuple) or not isinstance(result[0], Tensor):
        return None
    return result[0]


def key_influence(
    ctx: CheckContext,
    inputs: tuple[Tensor, Tensor, Tensor],
    keep: Tensor | None,
    is_causal: bool,
    visible: Tensor,
    where: str,
    sample: int | None = None,
    pad_value: float | None = None,
) -> dict[str, Any]:
    """Evidence ``influence``: each key/value position j alone replaced (by fresh values ten times
    larger, or ``pad_value``), in every sample or only in ``sample``; which query outputs move."""
    q, k, v = inputs
    base = attention_outputs(ctx, q, k, v, keep, is_causal)
    if base is None:
        return {}
    rows = slice(None) if sample is None else slice(sample, sample + 1)

    def outputs(j: int) -> Tensor | None:
        k2, v2 = k.clone(), v.clone()
        for t in (k2, v2):
            part = t[rows, ..., j, :]
            fill = torch.full_like(part, pad_value) if pad_value is not None else None
            t[rows, ..., j, :] = ctx.randn(*part.shape, scale=10.0) if fill is None else fill
        out = attention_outputs(ctx, q, k2, v2, keep, is_causal)
        return None if out is None else out[rows]

    return influence_map(outputs, base[rows], visible, where, rows="query", cols="perturbed key/value")


def leaked_weights_evidence(
    weights: Tensor, inputs: tuple[Tensor, Tensor, Tensor], keep: Tensor, where: str
) -> dict[str, Any]:
    """Evidence ``attention``: the target's weights beside the oracle's under ``keep``."""
    return attention_slice(weights, oracle(*inputs, keep)[1], where, keep)


@check(
    "mask.masked-weights-zero",
    claims=("mask.neg-inf-exact-zero",),
    needs=ATTN,
    depends_on=(SHAPES,),
)
def masked_weights_zero(ctx: CheckContext) -> None:
    """Masked weights are exactly 0 (not merely small), also with scores scaled by 1e3."""

    def prop(case: AttnCase) -> None:
        for scale in (1.0, SCORE_SCALE):
            q, k, v = qkv(ctx, case, score_scale=scale)
            keep = random_keep(ctx, case, fully_masked_row=False, per_head=True)
            _, weights = run_attention(ctx, case, q, k, v, keep)
            w = need_weights(ctx, weights)
            leaked = w[~keep]
            if not bool((leaked == 0).all()):
                worst = float(leaked.double().abs().nan_to_num(nan=float("inf")).max())
                with attached(partial(leaked_weights_evidence, w, (q, k, v), keep, case.describe())):
                    ctx.fail(
                        FailureKind.PROPERTY,
                        f"masked weights must be exactly 0, largest is {worst:.3e} "
                        f"[{case.describe()}, score x{scale:g}]",
                        measured=worst,
                        allowed=0.0,
                    )

    search_cases(ctx, prop)


def padded_self_attention(
    ctx: CheckContext, case: AttnCase, side: str, pad_value: float | None, score_scale: float
) -> None:
    """Self-attention-like inputs with key padding on ``side``; changing the pad contents to
    ``pad_value`` (or fresh random values) must not move the outputs of real queries."""
    q, k, v = qkv(ctx, case, score_scale=score_scale)
    real = padding_keep(ctx, case.b, case.nk, side=side)  # [b, nk]
    keep = real[:, None, None, :]
    out, _ = run_attention(ctx, case, q, k, v, keep)
    hidden = ~real[:, None, :].expand(case.b, case.h, case.nk)
    if pad_value is None:
        k2 = torch.where(hidden.unsqueeze(-1), ctx.randn(*k.shape, scale=10.0), k)
        v2 = torch.where(hidden.unsqueeze(-1), ctx.randn(*v.shape, scale=10.0), v)
    else:
        k2, v2 = fill_where(k, hidden, pad_value), fill_where(v, hidden, pad_value)
    out2, _ = run_attention(ctx, case, q, k2, v2, keep)
    label = "random" if pad_value is None else f"{pad_value:g}"
    sample = int(real.sum(dim=-1).argmin())  # the sample with the most padding
    visible = real[sample].expand(case.nq, case.nk)
    where = f"sample {sample}, {side} padding [{case.describe()}]"
    with attached(partial(key_influence, ctx, (q, k, v), keep, False, visible, where, sample, pad_value)):
        ctx.compare_direct(
            f"outputs after setting padded keys/values to {label} ({side} padding, "
            f"score x{score_scale:g}) [{case.describe()}]",
            out2,
            out.double(),
        )


@check(
    "mask.padding.invariance",
    claims=("mask.padding.invariance", "mask.padding.pad-value-arbitrary", "mask.finite-negative"),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def padding_invariance(ctx: CheckContext) -> None:
    """Left or right key padding: pad contents (random, or huge 1e10) change nothing, also with scores
    x1e3 (this is where a finite -1e4 mask bias is defeated)."""

    def prop(case: AttnCase) -> None:
        for side in ("right", "left"):
            for value in (None, huge_value(ctx.dtype)):
                for scale in (1.0, SCORE_SCALE):
                    padded_self_attention(ctx, case, side, value, scale)

    search_cases(ctx, prop)


@check(
    "mask.padding.nan-contents",
    claims=("mask.padding.nonfinite-isolated",),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def padding_nan_contents(ctx: CheckContext) -> None:
    """NaN in padded keys/values (e.g. NaN pad embeddings) changes nothing at real positions (not
    applicable to a target declaring nonfinite_pads='leak')."""
    require_isolated_nonfinite(ctx)

    def prop(case: AttnCase) -> None:
        for side in ("right", "left"):
            padded_self_attention(ctx, case, side, float("nan"), 1.0)

    search_cases(ctx, prop)


def perturb_after(ctx: CheckContext, k: Tensor, v: Tensor, cut: int) -> tuple[Tensor, Tensor]:
    """k, v with every key position >= ``cut`` replaced by fresh values ten times larger."""
    k2, v2 = k.clone(), v.clone()
    k2[..., cut:, :] = ctx.randn(*k2[..., cut:, :].shape, scale=10.0)
    v2[..., cut:, :] = ctx.randn(*v2[..., cut:, :].shape, scale=10.0)
    return k2, v2


def future_blind(ctx: CheckContext, case: AttnCase, alignment: str, *, explicit: bool) -> None:
    """For each cut, queries whose position is before the cut ignore keys from the cut on."""
    q, k, v = qkv(ctx, case)
    keep = aligned_causal_keep(ctx, case.nq, case.nk, alignment) if explicit else None
    out, _ = run_attention(ctx, case, q, k, v, keep, is_causal=not explicit)
    positions = query_positions(case.nq, case.nk, alignment)
    path = f"explicit {alignment} mask" if explicit else f"is_causal ({alignment}, as declared)"
    visible = torch.tensor([[0 <= j <= p for j in range(case.nk)] for p in positions])
    where = f"{path} [{case.describe()}]"
    for cut in cut_points(case.nk):
        blind = [i for i, p in enumerate(positions) if p < cut]
        # bottom-right with nq > nk: queries before position 0 see nothing; judge only those that see a key
        blind = [i for i in blind if positions[i] >= 0]
        if not blind:
            continue
        k2, v2 = perturb_after(ctx, k, v, cut)
        out2, _ = run_attention(ctx, case, q, k2, v2, keep, is_causal=not explicit)
        with attached(partial(key_influence, ctx, (q, k, v), keep, not explicit, visible, where)):
            ctx.compare_direct(
                f"{path}: queries {blind} after changing keys >= {cut} [{case.describe()}]",
                out2[..., blind, :],
                out[..., blind, :].double(),
                dims=("batch", "head", "query", "feature"),
                coords={2: blind},
            )


@check(
    "mask.causal.is-causal",
    claims=("mask.causal.future-blind", "mask.causal.alignment"),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def causal_is_causal(ctx: CheckContext) -> None:
    """``is_causal=True``: output i does not depend on keys after i's position (declared alignment;
    num_q == num_k and num_q != num_k)."""
    alignment = ctx.conventions.causal_alignment
    search_cases(ctx, lambda case: future_blind(ctx, case, alignment, explicit=False))


@check(
    "mask.causal.explicit",
    claims=("mask.causal.future-blind", "mask.causal.boolean-lower-triangular", "mask.causal.batch-shared"),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def causal_explicit(ctx: CheckContext) -> None:
    """An explicit [num_q, num_k] causal mask (shared by the batch), either alignment: future-blind."""

    def prop(case: AttnCase) -> None:
        for alignment in ALIGNMENTS:
            future_blind(ctx, case, alignment, explicit=True)

    search_cases(ctx, prop)


@check(
    "mask.causal.diagonal-visible",
    claims=("mask.causal.diagonal-visible",),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def causal_diagonal_visible(ctx: CheckContext) -> None:
    """Under ``is_causal`` each query sees its own position: changing the value there moves the output,
    and the first query (which sees only its own key) returns exactly that value row."""
    alignment = ctx.conventions.causal_alignment

    def prop(case: AttnCase) -> None:
        q, k, v = qkv(ctx, case)
        out, weights = run_attention(ctx, case, q, k, v, None, is_causal=True)
        ctx.compare_direct(
            f"query 0 (sees only key 0) [{case.describe()}]", out[..., 0, :], v[..., 0, :].double()
        )
        positions = query_positions(case.nq, case.nk, alignment)
        for i in probe_rows(case.nq):  # every row of a short sequence, the block edges of a long one
            pos = positions[i]
            v2 = v.clone()
            v2[..., pos, :] = v[..., pos, :] + 100.0
            out2, _ = run_attention(ctx, case, q, k, v2, None, is_causal=True)
            if tolerance.direct(out2[..., i, :], out[..., i, :].double()).ok:
                ctx.fail(
                    FailureKind.PROPERTY,
                    f"query {i} ignores its own position {pos} under is_causal [{case.describe()}]",
                )
            if weights is not None and not bool((weights[..., i, pos] > 0).all()):
                ctx.fail(FailureKind.PROPERTY, f"query {i}: weight on its own position {pos} is 0")

    search_cases(ctx, prop, square=True)


@check(
    "mask.causal.differential",
    claims=("mask.causal.alignment", "mask.causal.boolean-lower-triangular"),
    needs=ATTN,
    depends_on=(SHAPES, DIFFERENTIAL),  # judged against the oracle: blocked when the formula fails
    kind="differential",
)
def causal_differential(ctx: CheckContext) -> None:
    """``is_causal`` equals the oracle with the declared alignment's causal mask; an explicit mask of
    either alignment equals the oracle with that mask (rows with a visible key)."""
    require_notes_scoring(ctx)
    declared = ctx.conventions.causal_alignment

    def prop(example: Example) -> None:
        case = case_of(example)
        q, k, v = qkv(ctx, case)
        for alignment, explicit in [(declared, False), *((a, True) for a in ALIGNMENTS)]:
            keep = aligned_causal_keep(ctx, case.nq, case.nk, alignment)
            out, weights = run_attention(
                ctx, case, q, k, v, keep if explicit else None, is_causal=not explicit
            )
            path = f"explicit {alignment} mask" if explicit else f"is_causal (declared {alignment})"
            compare_with_oracle(ctx, path, case, (q, k, v), keep, out, weights)
        # an explicit mask of a documented layout together with is_causal: their conjunction
        explicit_mask = build_keep(ctx.generator, example, ctx.device)
        if explicit_mask is not None or example.get("is_causal"):
            combined = combined_keep(explicit_mask, example, declared)
            assert combined is not None
            full = combined.expand(case.b, case.h, case.nq, case.nk)
            out, weights = run_attention(
                ctx, case, q, k, v, explicit_mask, is_causal=bool(example.get("is_causal"))
            )
            path = f"{example['mask']} mask" + (" with is_causal" if example.get("is_causal") else "")
            compare_with_oracle(ctx, path, case, (q, k, v), full, out, weights)

    fixed = [
        {**case_example(c), "mask": mask, "is_causal": True}
        for c, mask in zip(FIXED_CASES, ("[nq,nk]", "[b,1,nq,nk]", "[b,h,nq,nk]", "[b,1,1,nk]", "none"))
    ]
    strategy = attention_example(kernel=ctx.profile.kernel, extras=mask_example())
    search_examples(ctx, prop, fixed, strategy)


@check(
    "mask.causal.additive",
    claims=("mask.causal.additive-form",),
    needs=ATTN,
    depends_on=(SHAPES, DIFFERENTIAL),  # judged against the oracle: blocked when the formula fails
    kind="differential",
)
def causal_additive(ctx: CheckContext) -> None:
    """The additive causal bias (0 where j <= i's position, -inf above, either alignment) passed to the
    target's additive-mask entry point (optional adapter method ``attention_additive``) gives the
    oracle's causal attention. Not applicable without that entry point."""
    require_notes_scoring(ctx)
    additive = require_additive_entry_point(ctx)

    def prop(case: AttnCase) -> None:
        q, k, v = qkv(ctx, case)
        for alignment in ALIGNMENTS:
            keep = aligned_causal_keep(ctx, case.nq, case.nk, alignment)
            bias = additive_mask(keep, dtype=q.dtype)
            ctx.record(case=case.describe(), q=q, k=k, v=v, bias=bias)
            out, weights = ctx.call(additive, q, k, v, bias=bias)
            ctx.expect_shape(f"output [{case.describe()}]", out, (case.b, case.h, case.nq, case.dv))
            compare_with_oracle(ctx, f"additive {alignment} causal bias", case, (q, k, v), keep, out, weights)

    search_cases(ctx, prop)


@check(
    "mask.boolean-equals-additive",
    claims=("mask.boolean-equals-additive",),
    needs=ATTN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def boolean_equals_additive(ctx: CheckContext) -> None:
    """Where the target takes an additive float mask (optional adapter method ``attention_additive``),
    the 0/-inf bias gives the same output and weights as the boolean mask."""
    additive = require_additive_entry_point(ctx)

    def prop(case: AttnCase) -> None:
        q, k, v = qkv(ctx, case)
        keep = random_keep(ctx, case, fully_masked_row=False, per_head=True)
        out, weights = run_attention(ctx, case, q, k, v, keep)
        bias = additive_mask(keep, dtype=q.dtype)
        ctx.record(bias=bias)
        out2, weights2 = ctx.call(additive, q, k, v, bias=bias)
        ctx.compare_direct(f"output, additive vs boolean mask [{case.describe()}]", out2, out.double())
        if weights is not None and weights2 is not None:
            ctx.compare_direct("weights, additive vs boolean mask", weights2, weights.double())

    search_cases(ctx, prop)
