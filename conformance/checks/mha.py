"""Checks of multi-head attention (``Capability.MHA``).

The target builds its layer with ``build_mha(d_model, num_heads, state, device, dtype)``; ``state`` is
the canonical state dict of ``reference.multihead.MultiHeadAttention`` (``w_q``, ``w_k``, ``w_v``,
``w_o``) so the differential check compares like with like. The layer is called as
``(x_q, x_kv, key_padding, attn_mask)``: ``key_padding`` [b, num_k] and ``attn_mask`` [num_q, num_k]
arrive in the target's declared polarity (canonically True = real token / may attend). A target
declaring ``num_kv_heads`` for its MHA (``Architecture``) gets the state of
``reference.grouped_mha.GroupedMultiHeadAttention`` (``w_k``/``w_v`` of ``num_kv_heads * d_head`` rows)
and head counts that are multiples of it; its grouped checks are in ``mha_grouped.py``.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.checks.inputs import (
    fill_where,
    huge_value,
    padding_keep,
    permutation,
    require_isolated_nonfinite,
    require_zero_policy,
    search_examples,
    supported_width,
)
from transformer_conformance.context import CheckContext, FailureKind, NotApplicable
from transformer_conformance.reference.grouped_mha import mha_reference
from transformer_conformance.reference.masks import causal_mask, combine_masks, key_padding_to_attention_mask
from transformer_conformance.reference.multihead import MultiHeadAttention
from transformer_conformance.registry import check
from transformer_conformance.strategies import Example, mha_example

MHA = (Capability.MHA,)
SHAPES = "mha.shapes"


@dataclass(frozen=True)
class MhaCase:
    """Sizes of one MHA call: x_q [b, nq, d_model], x_kv [b, nk, d_model], num_heads h."""

    d_model: int
    h: int
    b: int
    nq: int
    nk: int

    def describe(self) -> str:
        """Short text for failure messages."""
        return f"d_model={self.d_model} h={self.h} b={self.b} nq={self.nq} nk={self.nk}"


#: Odd head widths (5, 7), one head, length 1, nq != nk both ways.
FIXED: tuple[MhaCase, ...] = (
    MhaCase(10, 2, 2, 3, 5),
    MhaCase(14, 2, 2, 4, 4),
    MhaCase(12, 3, 1, 1, 6),
    MhaCase(6, 1, 2, 5, 2),
)


def mha_cases(ctx: CheckContext, *, square: bool = False) -> list[MhaCase]:
    """Fixed cases plus ``ctx.examples`` random ones (``square``: nq == nk)."""
    cases = list(FIXED)
    for _ in range(ctx.examples):
        h, d_head, b, nq, nk = (int(x) for x in torch.randint(1, 5, (5,), generator=ctx.generator))
        cases.append(MhaCase(h * (d_head + 1), h, b, nq + 1, nk + 1))
    if square:
        cases = [MhaCase(c.d_model, c.h, c.b, c.nk, c.nk) for c in cases]
    return [declared_case(ctx, c) for c in cases]


def declared_case(ctx: CheckContext, case: MhaCase) -> MhaCase:
    """``case`` fitted to the target's declaration: with ``num_kv_heads`` declared for its MHA, the
    head count becomes a multiple of it (``h * kv`` unless ``h`` already is one), head width kept, or
    replaced by a declared one (``Conventions.supported_d_heads``)."""
    kv = ctx.architecture.num_kv_heads
    width = supported_width(ctx, case.d_model // case.h)
    h = case.h if kv is None or case.h % kv == 0 else case.h * kv
    return MhaCase(width * h, h, case.b, case.nq, case.nk)


def search_mha(
    ctx: CheckContext,
    prop: Callable[[MhaCase], None],
    *,
    square: bool = False,
    fixed: tuple[MhaCase, ...] = FIXED,
    examples: int | None = None,
) -> None:
    """Run ``prop`` on the fixed cases, then on MHA sizes drawn by hypothesis (``ctx.examples``
    unless ``examples``); a failure is shrunk to the smallest sizes that show it
    (``conformance/search.py``). Drawn head counts are fitted to a declared ``num_kv_heads``
    (``declared_case``), as the fixed cases are."""

    def of(example: Example) -> MhaCase:
        nq = example["nk"] if square else example["nq"]
        case = MhaCase(example["d_model"], example["h"], example["b"], nq, example["nk"])
        return declared_case(ctx, case)

    cases = [{"d_model": c.d_model, "h": c.h, "b": c.b, "nq": c.nq, "nk": c.nk} for c in fixed]
    search_examples(ctx, lambda ex: prop(of(ex)), cases, mha_example(), examples)


@dataclass
class Layer:
    """The target's layer and the reference oracle built from the same canonical weights."""

    fn: Callable[..., Any]
    ref64: MultiHeadAttention
    ref: MultiHeadAttention


def build(ctx: CheckContext, case: MhaCase) -> Layer:
    """Draw canonical weights, build the reference (float64 and ctx.dtype) and the target layer (the
    grouped reference when the target declares ``num_kv_heads`` for its MHA)."""
    arch = ctx.architecture
    with torch.random.fork_rng(devices=[]):
        ref64 = mha_reference(case.d_model, case.h, arch.num_kv_heads, arch.kv_mapping)
    bound = 1.0 / math.sqrt(case.d_model)
    for param in ref64.parameters():
        param.data = ctx.randn(*param.shape, dtype=torch.float64, scale=bound)
    ref64 = ref64.to(ctx.device).eval()
    with torch.random.fork_rng(devices=[]):
        ref = mha_reference(case.d_model, case.h, arch.num_kv_heads, arch.kv_mapping)
    ref.load_state_dict({k: v.to(ctx.dtype) for k, v in ref64.state_dict().items()})
    ref = ref.to(device=ctx.device, dtype=ctx.dtype).eval()
    state = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    fn = ctx.call(ctx.adapter.build_mha, case.d_model, case.h, state, ctx.device, ctx.dtype)
    return Layer(fn, ref64, ref)


def run(
    ctx: CheckContext,
    layer: Layer,
    case: MhaCase,
    x_q: Tensor,
    x_kv: Tensor,
    key_padding: Tensor | None = None,
    attn_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Call the target layer with canonical masks converted to its polarity; check shapes."""
    ctx.record(case=case.describe(), x_q=x_q, x_kv=x_kv, key_padding=key_padding, attn_mask=attn_mask)
    result = ctx.call(layer.fn, x_q, x_kv, ctx.to_target_mask(key_padding), ctx.to_target_mask(attn_mask))
    if not isinstance(result, tuple) or len(result) != 2:
        ctx.fail(
            FailureKind.SHAPE, f"mha layer returned {type(result).__name__}, expected (out, weights|None)"
        )
    out, weights = result
    ctx.expect_shape(f"output [{case.describe()}]", out, (case.b, case.nq, case.d_model))
    ctx.expect_dtype("output", out, x_q.dtype)
    if not ctx.conventions.returns_weights:
        return out, None
    ctx.expect_shape(f"weights [{case.describe()}]", weights, (case.b, case.h, case.nq, case.nk))
    return out, weights


def oracle(
    layer: Layer, x_q: Tensor, x_kv: Tensor, key_padding: Tensor | None, attn_mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Reference (out64, weights64, out_same, weights_same) with the combined canonical mask."""
    kp = None if key_padding is None else key_padding_to_attention_mask(key_padding)
    mask = combine_masks(kp, attn_mask)
    out64, w64 = layer.ref64(x_q.double(), x_kv.double(), mask)
    out, w = layer.ref(x_q, x_kv, mask)
    return out64, w64, out, w


def inputs(ctx: CheckContext, case: MhaCase) -> tuple[Tensor, Tensor]:
    """x_q [b, nq, d_model] and x_kv [b, nk, d_model]."""
    return ctx.randn(case.b, case.nq, case.d_model), ctx.randn(case.b, case.nk, case.d_model)


# Multi-head attention is built on the attention function: when the target also declares that
# capability and it fails, the MHA checks are reported as blocked rather than as a cascade.
@check(
    SHAPES,
    claims=("mha.shape-preserving", "mha.concat-width"),
    needs=MHA,
    depends_on=("attention.differential",),
)
def shapes(ctx: CheckContext) -> None:
    """Self- and cross-attention keep [b, num_q, d_model]; weights (if returned) are [b, h, num_q, num_k]."""

    def prop(case: MhaCase) -> None:
        layer = build(ctx, case)
        x_q, x_kv = inputs(ctx, case)
        run(ctx, layer, case, x_q, x_kv)
        self_case = MhaCase(case.d_model, case.h, case.b, case.nq, case.nq)
        run(ctx, layer, self_case, x_q, x_q)

    search_mha(ctx, prop)


@check(
    "mha.differential",
    claims=(
        "mha.fused-equals-per-head",
        "mha.split-merge-roundtrip",
        "mha.output-sum-of-heads",
        "attention.scale.sqrt-dk",
        "attention.formula",
        "attention.cross.sources",
    ),
    needs=MHA,
    depends_on=(SHAPES,),
    kind="differential",
)
def differential(ctx: CheckContext) -> None:
    """With canonical weights the target matches the float64 reference layer (scale 1/sqrt(d_head), heads
    split by column blocks), without masks, with left/right key padding and with a causal mask."""
    if not ctx.conventions.loads_weights:
        raise NotApplicable(f"target {ctx.adapter.name!r} declares loads_weights=False")

    def prop(case: MhaCase) -> None:
        layer = build(ctx, case)
        x_q, x_kv = inputs(ctx, case)
        right = padding_keep(ctx, case.b, case.nk, side="right")
        left = padding_keep(ctx, case.b, case.nk, side="left")
        variants: list[tuple[str, Tensor | None, Tensor | None]] = [
            ("no mask", None, None),
            ("right key padding", right, None),
            ("left key padding", left, None),
        ]
        if case.nq <= case.nk:
            causal = causal_mask(case.nq, case.nk, device=ctx.device)
            variants += [("causal", None, causal), ("causal + right padding", right, causal)]
        for label, kp, am in variants:
            out, weights = run(ctx, layer, case, x_q, x_kv, kp, am)
            out64, w64, same, wsame = oracle(layer, x_q, x_kv, kp, am)
            ctx.compare(f"output, {label} [{case.describe()}]", out, out64, same)
            if weights is not None:
                ctx.compare(f"weights, {label} [{case.describe()}]", weights, w64, wsame)

    search_mha(ctx, prop)


@check(
    "mha.permutation-equivariance",
    claims=("attention.permutation-equivariance", "attention.self.same-input"),
    needs=MHA,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def permutation_equivariance(ctx: CheckContext) -> None:
    """Self-attention without positions or causal mask: permuting the tokens (with their key padding)
    permutes the outputs the same way."""

    def prop(case: MhaCase) -> None:
        layer = build(ctx, case)
        x, _ = inputs(ctx, case)
        perm = permutation(ctx, case.nq)
        real = padding_keep(ctx, case.b, case.nq, side="right")
        for kp in (None, real):
            out, _ = run(ctx, layer, case, x, x, kp)
            xp = x[:, perm]
            out_p, _ = run(ctx, layer, case, xp, xp, None if kp is None else kp[:, perm])
            ctx.compare_direct(
                f"output of permuted tokens vs permuted output [{case.describe()}]",
                out_p,
                out[:, perm].double(),
            )

    search_mha(ctx, prop, square=True)


@check(
    "mha.cross.memory-permutation",
    claims=("attention.cross.memory-permutation-invariant", "attention.cross.no-causal-mask"),
    needs=MHA,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def memory_permutation(ctx: CheckContext) -> None:
    """Cross-attention: permuting the memory (with its padding mask) leaves every output unchanged."""

    def prop(case: MhaCase) -> None:
        layer = build(ctx, case)
        x_q, memory = inputs(ctx, case)
        perm = permutation(ctx, case.nk)
        real = padding_keep(ctx, case.b, case.nk, side="right")
        for kp in (None, real):
            out, _ = run(ctx, layer, case, x_q, memory, kp)
            out_p, _ = run(ctx, layer, case, x_q, memory[:, perm], None if kp is None else kp[:, perm])
            ctx.compare_direct(f"output with permuted memory [{case.describe()}]", out_p, out.double())

    search_mha(ctx, prop)


def padded_memory(ctx: CheckContext, value: float | None, sides: tuple[str, ...]) -> None:
    """Pad contents of x_kv set to ``value`` (None: random) change nothing (left/right padding)."""

    def prop(case: MhaCase) -> None:
        layer = build(ctx, case)
        x_q, x_kv = inputs(ctx, case)
        for side in sides:
            real = padding_keep(ctx, case.b, case.nk, side=side)
            out, _ = run(ctx, layer, case, x_q, x_kv, real)
            if value is None:
                changed = torch.where(real.unsqueeze(-1), x_kv, ctx.randn(*x_kv.shape, scale=10.0))
            else:
                changed = fill_where(x_kv, ~real, value)
            out2, _ = run(ctx, layer, case, x_q, changed, real)
            label = "random" if value is None else f"{value:g}"
            ctx.compare_direct(
                f"output after setting padded memory to {label} ({side} padding) [{case.describe()}]",
                out2,
                out.double(),
            )

    search_mha(ctx, prop)


@check(
    "mha.padding-invariance",
    claims=("mask.padding.invariance", "mask.padding.pad-value-arbitrary"),
    needs=MHA,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def padding_invariance(ctx: CheckContext) -> None:
    """Key padding (left or right): random or huge (1e10) pad contents change nothing."""
    padded_memory(ctx, None, ("right", "left"))
    padded_memory(ctx, huge_value(ctx.dtype), ("right", "left"))


@check(
    "mha.padding.nan-contents",
    claims=("mask.padding.nonfinite-isolated",),
    needs=MHA,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def padding_nan_contents(ctx: CheckContext) -> None:
    """NaN pad contents (e.g. NaN pad embeddings) change nothing at real positions (not applicable to
    a target declaring nonfinite_pads='leak')."""
    require_isolated_nonfinite(ctx)
    padded_memory(ctx, float("nan"), ("right", "left"))


@check(
    "mha.causal",
    claims=("mask.causal.future-blind",),
    needs=MHA,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def causal(ctx: CheckContext) -> None:
    """Self-attention with an explicit causal attn_mask: output i ignores tokens after i."""

    def prop(case: MhaCase) -> None:
        layer = build(ctx, case)
        x, _ = inputs(ctx, case)
        mask = causal_mask(case.nq, case.nk, device=ctx.device)
        out, _ = run(ctx, layer, case, x, x, None, mask)
        for cut in range(1, case.nq):
            x2 = x.clone()
            x2[:, cut:] = ctx.randn(case.b, case.nq - cut, case.d_model, scale=10.0)
            out2, _ = run(ctx, layer, case, x2, x2, None, mask)
            ctx.compare_direct(
                f"outputs before {cut} after changing tokens >= {cut} [{case.describe()}]",
                out2[:, :cut],
                out[:, :cut].double(),
            )

    search_mha(ctx, prop, square=True)


def _fully_masked_sample(ctx: CheckContext, case: MhaCase) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """Sample 0 has only padding keys, sample 1 none; sample 1 must stay finite (its values are the
    formula's business, judged by ``mha.differential``).
    Returns (out, weights, oracle out64, oracle out in the working dtype)."""
    layer = build(ctx, case)
    x_q, x_kv = inputs(ctx, case)
    real = torch.ones(case.b, case.nk, dtype=torch.bool, device=ctx.device)
    real[0] = False
    out, weights = run(ctx, layer, case, x_q, x_kv, real)
    ctx.expect_finite(f"sample with visible keys [{case.describe()}]", out[1:])
    out64, _, same, _ = oracle(layer, x_q, x_kv, real, None)
    return out, weights, out64, same


@check("mha.fully-masked-row", claims=("attention.fully-masked-row",), needs=MHA, depends_on=(SHAPES,))
def fully_masked_row(ctx: CheckContext) -> None:
    """Project policy: a sample whose keys are all padding gets attention rows of exactly 0, so its
    output rows equal the output bias (the reference's result, which involves no attention formula:
    a scale or head-split bug does not change it); weights, if returned, are exactly 0.
    Not applicable to a target declaring another convention (``mha.fully-masked-row.declared``)."""
    require_zero_policy(ctx)

    def prop(case: MhaCase) -> None:
        case = MhaCase(case.d_model, case.h, 2, case.nq, case.nk)
        out, weights, out64, same = _fully_masked_sample(ctx, case)
        ctx.compare(f"fully masked sample (policy 'zero') [{case.describe()}]", out[0], out64[0], same[0])
        if weights is not None and not bool((weights[0] == 0).all()):
            ctx.fail(
                FailureKind.PROPERTY, f"fully masked sample: weights not all exactly 0 [{case.describe()}]"
            )

    search_mha(ctx, prop)


@check(
    "mha.fully-masked-row.declared",
    claims=("attention.weights.rows-sum-to-one",),
    needs=MHA,
    depends_on=(SHAPES,),
)
def fully_masked_row_declared(ctx: CheckContext) -> None:
    """A target declaring a convention other than the zero policy (nan: NaN rows; uniform: finite rows;
    zero_output_uniform_weights: a zero output row) follows it for a sample whose keys are all padding,
    while the other sample stays finite and its weight rows sum to 1. Credits only the row-sum claim
    (the target does not meet the policy).
    Not applicable under 'zero' or without returned weights."""
    convention = ctx.conventions.fully_masked_row
    if convention == "zero":
        raise NotApplicable("target declares the project policy 'zero' (see mha.fully-masked-row)")
    if not ctx.conventions.returns_weights:
        raise NotApplicable(f"target {ctx.adapter.name!r} declares returns_weights=False")

    def prop(case: MhaCase) -> None:
        case = MhaCase(case.d_model, case.h, 2, case.nq, case.nk)
        out, weights, _, _ = _fully_masked_sample(ctx, case)
        if weights is None:
            raise NotApplicable(f"target {ctx.adapter.name!r} declares returns_weights=False")
        w = weights
        dead = out[0]
        if convention == "nan" and not bool(torch.isnan(dead).all()):
            ctx.fail(
                FailureKind.PROPERTY,
                f"fully masked sample: declared 'nan', got finite values [{case.describe()}]",
            )
        if convention == "uniform":
            ctx.expect_finite("fully masked sample (declared 'uniform')", dead)
        if convention == "zero_output_uniform_weights":
            ctx.compare_direct(
                "fully masked sample: declared zero output", dead, torch.zeros_like(dead, dtype=torch.float64)
            )
        sums = w[1:].double().sum(dim=-1)
        ctx.compare_direct(
            f"weight row sums of the sample with visible keys [{case.describe()}]",
            sums.to(w.dtype),
            torch.ones_like(sums),
        )

    search_mha(ctx, prop)


@check(
    "mha.batch-independence",
    claims=("batch.independence",),
    needs=MHA,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def batch_independence(ctx: CheckContext) -> None:
    """Sample 0's output is unchanged when the other samples change, and when it runs alone."""

    def prop(case: MhaCase) -> None:
        case = MhaCase(case.d_model, case.h, 3, case.nq, case.nk)
        layer = build(ctx, case)
        x_q, x_kv = inputs(ctx, case)
        real = padding_keep(ctx, case.b, case.nk, side="right")
        out, _ = run(ctx, layer, case, x_q, x_kv, real)
        x_q2, x_kv2 = inputs(ctx, case)
        x_q2[0], x_kv2[0] = x_q[0], x_kv[0]
        out2, _ = run(ctx, layer, case, x_q2, x_kv2, real)
        ctx.compare_direct(
            f"sample 0 after changing samples 1..2 [{case.describe()}]", out2[0], out[0].double()
        )
        single = MhaCase(case.d_model, case.h, 1, case.nq, case.nk)
        alone, _ = run(ctx, layer, single, x_q[:1], x_kv[:1], real[:1])
        ctx.compare_direct("sample 0 alone vs in a batch", alone[0], out[0].double())

    search_mha(ctx, prop)


@check("mha.determinism", claims=("determinism.eval",), needs=MHA, depends_on=(SHAPES,), kind="metamorphic")
def determinism(ctx: CheckContext) -> None:
    """The same inputs give the same outputs on repeated calls (eval mode, no dropout); equal up to
    the direct tolerance, since a BLAS may block a reduction differently on a thread's first call."""

    def prop(case: MhaCase) -> None:
        layer = build(ctx, case)
        x_q, x_kv = inputs(ctx, case)
        first, _ = run(ctx, layer, case, x_q, x_kv)
        for again in (2, 3):
            later, _ = run(ctx, layer, case, x_q, x_kv)
            ctx.compare_direct(f"call {again} vs call 1 [{case.describe()}]", later, first.double())

    search_mha(ctx, prop, fixed=FIXED[:3], examples=max(1, ctx.examples // 2))
