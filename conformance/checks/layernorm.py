"""Checks of layer normalisation (``Capability.LAYER_NORM``).

The target builds ``build_layer_norm(d, state, device, dtype)`` with ``state = {"weight", "bias"}``
(canonical names of ``reference.layernorm.LayerNorm``); the oracle is ``reference.layernorm.layer_norm``
with the target's declared ``layer_norm_eps``. Inputs include rows whose variance is comparable to
eps (where eps inside vs outside the square root differs), constant rows, rows far from zero mean, and
odd widths (where biased vs unbiased variance differs).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.checks.inputs import search_examples
from transformer_conformance.context import CheckContext, NotApplicable
from transformer_conformance.reference.layernorm import layer_norm
from transformer_conformance.registry import check
from transformer_conformance.strategies import Example, sizes_example

LN = (Capability.LAYER_NORM,)
SHAPES = "layernorm.shapes"
WIDTHS = (1, 2, 5, 7, 16)


def ln_inputs(ctx: CheckContext, d: int) -> Tensor:
    """[4, 8, d]: unit rows, rows with std 1e-3 (var ~ eps), constant rows, rows with mean 10 (an
    offset large enough to test the centring, small enough that float32 cancellation stays near the
    tolerance floor instead of making the max-error baseline a matter of luck)."""
    x = ctx.randn(4, 8, d)
    x[1] = ctx.randn(8, d, scale=1e-3)
    x[2] = ctx.randn(8, 1).expand(8, d)
    x[3] = x[3] + 10.0
    return x


def search_widths(ctx: CheckContext, prop: Callable[[Example], None], *, low: int = 1) -> None:
    """``prop({"d"})`` on ``WIDTHS`` (from ``low``), then on widths drawn by hypothesis (``low``..17),
    a failure shrunk to the smallest width that shows it (``conformance/search.py``)."""
    fixed = [{"d": d} for d in WIDTHS if d >= low]
    search_examples(ctx, prop, fixed, sizes_example(d=(low, 17)))


def build(
    ctx: CheckContext, d: int, *, identity: bool = False
) -> tuple[Callable[[Tensor], Any], Tensor, Tensor]:
    """The target's LayerNorm with canonical ``weight``/``bias`` (random, or 1/0 when ``identity``)."""
    if identity:
        weight = torch.ones(d, dtype=torch.float64, device=ctx.device)
        bias = torch.zeros(d, dtype=torch.float64, device=ctx.device)
    else:
        weight = ctx.randn(d, dtype=torch.float64) + 1.0
        bias = ctx.randn(d, dtype=torch.float64)
    state: dict[str, Tensor] | None = {"weight": weight.to(ctx.dtype), "bias": bias.to(ctx.dtype)}
    if not ctx.conventions.loads_weights:
        state = None  # as documented: the target's own (freshly initialised: 1 and 0) weights
    fn = ctx.call(ctx.adapter.build_layer_norm, d, state, ctx.device, ctx.dtype)
    return fn, weight, bias


def run(ctx: CheckContext, fn: Callable[[Tensor], Any], x: Tensor) -> Tensor:
    """Call the target; the output must have the input's shape and dtype."""
    ctx.record(x=x)
    y = ctx.call(fn, x)
    ctx.expect_shape("layer norm output", y, x.shape)
    ctx.expect_dtype("layer norm output", y, x.dtype)
    out: Tensor = y
    return out


@check(SHAPES, claims=("layernorm.formula",), needs=LN)
def shapes(ctx: CheckContext) -> None:
    """Output has the input's shape and dtype, for 1-d to 3-d inputs."""

    def prop(example: Example) -> None:
        d = example["d"]
        fn, _, _ = build(ctx, d)
        for shape in ((d,), (3, d), (2, 3, d)):
            run(ctx, fn, ctx.randn(*shape))

    search_widths(ctx, prop)


@check(
    "layernorm.differential",
    claims=("layernorm.formula",),
    needs=LN,
    depends_on=(SHAPES,),
    kind="differential",
)
def differential(ctx: CheckContext) -> None:
    """Matches (x - mean) / sqrt(biased var + eps) * weight + bias with the declared eps (not applicable
    when the target declares loads_weights=False)."""
    if not ctx.conventions.loads_weights:
        raise NotApplicable(f"target {ctx.adapter.name!r} declares loads_weights=False")
    eps = ctx.conventions.layer_norm_eps

    def prop(example: Example) -> None:
        d = example["d"]
        fn, weight, bias = build(ctx, d)
        x = ln_inputs(ctx, d)
        y = run(ctx, fn, x)
        oracle64 = layer_norm(x.double(), weight, bias, eps)
        same = layer_norm(x, weight.to(ctx.dtype), bias.to(ctx.dtype), eps)
        ctx.compare(f"layer norm output (d={d}, eps={eps:g})", y, oracle64, same)

    search_widths(ctx, prop)


@check(
    "layernorm.zero-mean-unit-var", claims=("layernorm.zero-mean-unit-var",), needs=LN, depends_on=(SHAPES,)
)
def zero_mean_unit_var(ctx: CheckContext) -> None:
    """With weight 1 and bias 0 each row has mean 0 and biased variance var / (var + eps) (unit and
    small-variance rows; constant and offset rows amplify rounding by 1/sqrt(eps) and are judged by the
    differential check instead)."""
    eps = ctx.conventions.layer_norm_eps

    def prop(example: Example) -> None:
        d = example["d"]
        fn, _, _ = build(ctx, d, identity=True)
        x = ln_inputs(ctx, d)[:2]
        y = run(ctx, fn, x)
        y64 = y.double()
        var_x = x.double().var(dim=-1, unbiased=False)
        # statistics of the target's output, rounded back to its dtype (the direct rule of that dtype)
        mean_y = y64.mean(dim=-1).to(y.dtype)
        var_y = y64.var(dim=-1, unbiased=False).to(y.dtype)
        ctx.compare_direct(f"row means (d={d})", mean_y, torch.zeros_like(var_x))
        ctx.compare_direct(f"row variances vs var/(var+eps) (d={d})", var_y, var_x / (var_x + eps))

    search_widths(ctx, prop, low=2)


@check(
    "layernorm.per-sample",
    claims=("layernorm.per-sample", "layernorm.position-wise", "batch.independence"),
    needs=LN,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def per_sample(ctx: CheckContext) -> None:
    """Sample 0 / position 0 do not change when other samples or other positions change."""

    def prop(example: Example) -> None:
        d = example["d"]
        fn, _, _ = build(ctx, d)
        x = ln_inputs(ctx, d)
        y = run(ctx, fn, x)
        x2 = ctx.randn(*x.shape, scale=5.0)
        x2[0, 0] = x[0, 0]
        y2 = run(ctx, fn, x2)
        ctx.compare_direct(f"sample 0 position 0 after changing the rest (d={d})", y2[0, 0], y[0, 0].double())
        alone = run(ctx, fn, x[:1, :1])
        ctx.compare_direct(f"sample 0 position 0 alone (d={d})", alone[0, 0], y[0, 0].double())

    search_widths(ctx, prop)
