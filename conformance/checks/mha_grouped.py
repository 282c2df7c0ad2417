"""Checks of grouped-query multi-head attention (``Capability.MHA`` with a declared ``num_kv_heads``).

A target declares ``Architecture(num_kv_heads=kv, kv_mapping=...)`` for its MHA (``architecture`` or
``capability_architectures[Capability.MHA]``); ``build_mha(d_model, num_heads, state, ...)`` then gets the
canonical state of ``reference.grouped_mha.GroupedMultiHeadAttention`` (``w_k`` and ``w_v`` of
``kv * d_head`` rows) and builds ``num_heads`` query heads over its ``kv`` KV heads. The oracle is that
reference layer in float64, loaded with the same weights. Both checks are not-applicable, naming the
reason, without a declared ``num_kv_heads``.
"""

from collections.abc import Callable

import torch
from hypothesis import strategies as st

from transformer_conformance.adapter import Capability
from transformer_conformance.checks.inputs import padding_keep, permutation, search_examples
from transformer_conformance.checks.mha import (
    FIXED,
    SHAPES,
    Layer,
    MhaCase,
    build,
    declared_case,
    inputs,
    oracle,
    run,
)
from transformer_conformance.context import CheckContext, NotApplicable
from transformer_conformance.reference.grouped_mha import relabel_order, relabel_state
from transformer_conformance.reference.masks import causal_mask
from transformer_conformance.registry import check
from transformer_conformance.strategies import Example, mha_example

MHA = (Capability.MHA,)
#: Query heads per KV head in the grouped cases (1: plain MHA; with one KV head: MQA).
GROUPS: tuple[int, ...] = (1, 2, 3)


def declared_kv_heads(ctx: CheckContext) -> int:
    """The KV head count the target declares for its MHA, or NotApplicable."""
    kv = ctx.architecture.num_kv_heads
    if kv is None:
        raise NotApplicable(
            f"target {ctx.adapter.name!r} declares no num_kv_heads for its MHA (no grouped-query support)"
        )
    return kv


def grouped_case(ctx: CheckContext, example: Example) -> tuple[MhaCase, int]:
    """(case, kv) of an MHA example with ``h = kv * g`` query heads (``example["g"]`` query heads per
    KV head), at the example's head width fitted to the declaration (``mha.declared_case``)."""
    kv = declared_kv_heads(ctx)
    base = declared_case(
        ctx, MhaCase(example["d_model"], example["h"], example["b"], example["nq"], example["nk"])
    )
    h = kv * int(example["g"])
    return MhaCase(base.d_model // base.h * h, h, base.b, base.nq, base.nk), kv


def search_grouped(ctx: CheckContext, prop: Callable[[MhaCase, int], None]) -> None:
    """Run ``prop(case, kv)`` on the fixed MHA cases (``g`` cycling through ``GROUPS``), then on MHA
    sizes and group sizes drawn by hypothesis (``ctx.examples``), shrunk on failure
    (``conformance/search.py``)."""
    declared_kv_heads(ctx)
    fixed = [
        {"d_model": c.d_model, "h": c.h, "b": c.b, "nq": c.nq, "nk": c.nk, "g": GROUPS[i % len(GROUPS)]}
        for i, c in enumerate(FIXED)
    ]
    strategy = st.tuples(mha_example(), st.sampled_from(GROUPS)).map(lambda pair: {**pair[0], "g": pair[1]})
    search_examples(ctx, lambda example: prop(*grouped_case(ctx, example)), fixed, strategy)


def _loads_weights(ctx: CheckContext) -> None:
    if not ctx.conventions.loads_weights:
        raise NotApplicable(f"target {ctx.adapter.name!r} declares loads_weights=False")


@check(
    "mha.gqa.differential",
    claims=("mha.gqa-projections", "gqa.repeat-equivalence", "gqa.mqa-one-group"),
    needs=MHA,
    depends_on=(SHAPES,),
    kind="differential",
)
def gqa_differential(ctx: CheckContext) -> None:
    """With canonical grouped weights (w_k, w_v of num_kv_heads * d_head rows) and 1, 2 or 3 query heads
    per KV head, the target matches the float64 grouped reference layer under the declared kv_mapping:
    no mask, left/right key padding, causal. Not applicable without a declared num_kv_heads."""
    _loads_weights(ctx)

    def prop(case: MhaCase, kv: int) -> None:
        layer = build(ctx, case)
        x_q, x_kv = inputs(ctx, case)
        right = padding_keep(ctx, case.b, case.nk, side="right")
        left = padding_keep(ctx, case.b, case.nk, side="left")
        variants: list[tuple[str, torch.Tensor | None, torch.Tensor | None]] = [
            ("no mask", None, None),
            ("right key padding", right, None),
            ("left key padding", left, None),
        ]
        if case.nq <= case.nk:
            variants.append(("causal", None, causal_mask(case.nq, case.nk, device=ctx.device)))
        where = f"{case.describe()} kv_heads={kv} mapping={ctx.architecture.kv_mapping}"
        for label, kp, am in variants:
            out, weights = run(ctx, layer, case, x_q, x_kv, kp, am)
            out64, w64, same, wsame = oracle(layer, x_q, x_kv, kp, am)
            ctx.compare(f"grouped output, {label} [{where}]", out, out64, same)
            if weights is not None:
                ctx.compare(f"grouped weights, {label} [{where}]", weights, w64, wsame)

    search_grouped(ctx, prop)


def _relabelled(
    ctx: CheckContext, layer: Layer, case: MhaCase, order: list[int], kv_order: list[int]
) -> Layer:
    """The target's layer built from the relabelled canonical state."""
    state = relabel_state(layer.ref.state_dict(), case.h, ctx.architecture.kv_heads(case.h), order, kv_order)
    fn = ctx.call(ctx.adapter.build_mha, case.d_model, case.h, state, ctx.device, ctx.dtype)
    return Layer(fn, layer.ref64, layer.ref)


@check(
    "mha.gqa.group-relabel",
    claims=("mha.gqa-group-relabel", "gqa.repeat-equivalence"),
    needs=MHA,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def gqa_group_relabel(ctx: CheckContext) -> None:
    """Black box on the target's own outputs: relabelling its heads consistently with the declared
    grouping (query heads permuted within their KV group, KV heads permuted together with their groups,
    w_o's columns following the query heads) leaves the output unchanged and permutes the weights
    along the head axis. A target grouping its heads otherwise than declared changes its output.
    Not applicable without a declared num_kv_heads."""
    _loads_weights(ctx)
    mapping = ctx.architecture.kv_mapping

    def prop(case: MhaCase, kv: int) -> None:
        group = case.h // kv
        if group == 1 and kv == 1:
            return
        layer = build(ctx, case)
        x_q, x_kv = inputs(ctx, case)
        within = [[int(i) for i in permutation(ctx, group).cpu()] for _ in range(kv)]
        kv_order = [int(i) for i in permutation(ctx, kv).cpu()]
        real = padding_keep(ctx, case.b, case.nk, side="right")
        out, weights = run(ctx, layer, case, x_q, x_kv, real)
        # Within the groups alone first: a combined relabel can also be valid under the other
        # mapping (with h=4, kv=2 both swaps at once move whole contiguous blocks), a within-group
        # one never is, so a wrong kv_mapping fails on every case with group > 1.
        relabels = [(within, list(range(kv)))] if group > 1 else []
        for within_order, kv_moves in [*relabels, (within, kv_order)]:
            order = relabel_order(case.h, kv, within_order, kv_moves, mapping)
            moved = _relabelled(ctx, layer, case, order, kv_moves)
            where = f"{case.describe()} kv_heads={kv} mapping={mapping} head order={order}"
            out2, weights2 = run(ctx, moved, case, x_q, x_kv, real)
            ctx.compare_direct(f"output with heads relabelled by the grouping [{where}]", out2, out.double())
            if weights is not None and weights2 is not None:
                index = torch.tensor(order, device=weights.device)
                ctx.compare_direct(
                    f"weights with heads relabelled vs weights permuted [{where}]",
                    weights2,
                    weights.index_select(1, index).double(),
                )

    search_grouped(ctx, prop)
