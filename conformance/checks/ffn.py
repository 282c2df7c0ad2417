"""Checks of the position-wise feed-forward network (``Capability.FFN``).

``build_ffn(d_model, d_ff, state, device, dtype)`` takes the canonical state of
``reference.ffn.PositionWiseFFN`` (``w_1``, ``w_2``; ReLU, the reference default).
"""

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.checks.inputs import permutation, search_examples
from transformer_conformance.context import CheckContext, NotApplicable
from transformer_conformance.reference.ffn import PositionWiseFFN
from transformer_conformance.registry import check
from transformer_conformance.strategies import Example, sizes_example

FFN = (Capability.FFN,)
SHAPES = "ffn.shapes"
SIZES = ((4, 16), (5, 7), (1, 3), (6, 24))


def search_sizes(ctx: CheckContext, prop: Callable[[Example], None]) -> None:
    """``prop({"d_model", "d_ff"})`` on ``SIZES``, then on sizes drawn by hypothesis (d_model 1..9,
    d_ff 1..24), a failure shrunk to the smallest widths that show it (``conformance/search.py``)."""
    fixed = [{"d_model": d_model, "d_ff": d_ff} for d_model, d_ff in SIZES]
    search_examples(ctx, prop, fixed, sizes_example(d_model=(1, 9), d_ff=(1, 24)))


def build(
    ctx: CheckContext, d_model: int, d_ff: int
) -> tuple[Callable[[Tensor], Any], PositionWiseFFN, PositionWiseFFN]:
    """Canonical random weights; returns (target layer, reference float64, reference in ctx.dtype)."""
    with torch.random.fork_rng(devices=[]):
        ref64 = PositionWiseFFN(d_model, d_ff)
        ref = PositionWiseFFN(d_model, d_ff)
    for name, param in ref64.named_parameters():
        fan_in = d_model if name.startswith("w_1") else d_ff
        param.data = ctx.randn(*param.shape, dtype=torch.float64, scale=1.0 / math.sqrt(fan_in))
    ref64 = ref64.to(ctx.device).eval()
    ref.load_state_dict({k: v.to(ctx.dtype) for k, v in ref64.state_dict().items()})
    ref = ref.to(device=ctx.device, dtype=ctx.dtype).eval()
    state: dict[str, Tensor] | None = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    if not ctx.conventions.loads_weights:
        state = None  # as documented: the target uses its own weights
    fn = ctx.call(ctx.adapter.build_ffn, d_model, d_ff, state, ctx.device, ctx.dtype)
    return fn, ref64, ref


def run(ctx: CheckContext, fn: Callable[[Tensor], Any], x: Tensor) -> Tensor:
    """Call the target; the output must have the input's shape and dtype."""
    ctx.record(x=x)
    y = ctx.call(fn, x)
    ctx.expect_shape("ffn output", y, x.shape)
    ctx.expect_dtype("ffn output", y, x.dtype)
    out: Tensor = y
    return out


@check(SHAPES, claims=("ffn.widen-then-project",), needs=FFN)
def shapes(ctx: CheckContext) -> None:
    """[b, l, d_model] -> [b, l, d_model] (length 1 included)."""

    def prop(example: Example) -> None:
        d_model, d_ff = example["d_model"], example["d_ff"]
        fn, _, _ = build(ctx, d_model, d_ff)
        for length in (1, 5):
            run(ctx, fn, ctx.randn(2, length, d_model))

    search_sizes(ctx, prop)


@check(
    "ffn.differential",
    claims=("ffn.widen-then-project",),
    needs=FFN,
    depends_on=(SHAPES,),
    kind="differential",
)
def differential(ctx: CheckContext) -> None:
    """Matches W_2 relu(W_1 x + b_1) + b_2 of the float64 reference with the same canonical weights."""
    if not ctx.conventions.loads_weights:
        raise NotApplicable(f"target {ctx.adapter.name!r} declares loads_weights=False")

    def prop(example: Example) -> None:
        d_model, d_ff = example["d_model"], example["d_ff"]
        fn, ref64, ref = build(ctx, d_model, d_ff)
        x = ctx.randn(3, 4, d_model)
        ctx.compare(
            f"ffn output (d_model={d_model}, d_ff={d_ff})", run(ctx, fn, x), ref64(x.double()), ref(x)
        )

    search_sizes(ctx, prop)


@check(
    "ffn.position-wise", claims=("ffn.position-wise",), needs=FFN, depends_on=(SHAPES,), kind="metamorphic"
)
def position_wise(ctx: CheckContext) -> None:
    """Position i's output depends only on position i (changing others changes nothing) and the same
    weights serve every position (permuting positions permutes the outputs)."""

    def prop(example: Example) -> None:
        d_model, d_ff = example["d_model"], example["d_ff"]
        fn, _, _ = build(ctx, d_model, d_ff)
        x = ctx.randn(2, 6, d_model)
        y = run(ctx, fn, x)
        x2 = ctx.randn(2, 6, d_model, scale=5.0)
        x2[:, 2] = x[:, 2]
        ctx.compare_direct(
            f"position 2 after changing the others (d_model={d_model})",
            run(ctx, fn, x2)[:, 2],
            y[:, 2].double(),
        )
        perm = permutation(ctx, 6)
        ctx.compare_direct(
            f"permuted positions (d_model={d_model})", run(ctx, fn, x[:, perm]), y[:, perm].double()
        )

    search_sizes(ctx, prop)
