"""Checks of the sinusoidal positional table (``Capability.POSITIONAL``).

``positional_table(num_positions, d_model, device, dtype)`` is compared with
``reference.positional.sinusoidal_encoding`` in the target's declared ``sinusoidal_layout``.
"""

import torch

from transformer_conformance.adapter import Capability
from transformer_conformance.context import CheckContext
from transformer_conformance.reference.positional import shift_matrix, sinusoidal_encoding
from transformer_conformance.registry import check

POS = (Capability.POSITIONAL,)
SHAPES = "positional.shapes"
WIDTHS = (2, 6, 10, 16)


def table(ctx: CheckContext, n: int, d: int) -> torch.Tensor:
    """The target's table [n, d] (shape and dtype checked)."""
    ctx.record(num_positions=n, d_model=d)
    t = ctx.call(ctx.adapter.positional_table, n, d, ctx.device, ctx.dtype)
    ctx.expect_shape(f"positional table (n={n}, d={d})", t, (n, d))
    ctx.expect_dtype("positional table", t, ctx.dtype)
    out: torch.Tensor = t
    return out


@check(SHAPES, claims=("positional.sinusoidal.any-length",), needs=POS)
def shapes(ctx: CheckContext) -> None:
    """The table is [num_positions, d_model] in the requested dtype (1 position included)."""
    for d in WIDTHS:
        for n in (1, 7, 50):
            table(ctx, n, d)


@check(
    "positional.sinusoidal.formula",
    claims=("positional.sinusoidal.formula",),
    needs=POS,
    depends_on=(SHAPES,),
    kind="differential",
)
def formula(ctx: CheckContext) -> None:
    """sin at the sine columns, cos at the cosine columns of the declared layout, frequency
    1/10000^(2i/d), positions up to 2000 (differential rule against the float64 table)."""
    layout = ctx.conventions.sinusoidal_layout
    for d in WIDTHS:
        actual = table(ctx, 2000, d)
        oracle64 = sinusoidal_encoding(2000, d, layout=layout, dtype=torch.float64, device=ctx.device)
        same = sinusoidal_encoding(2000, d, layout=layout, dtype=ctx.dtype, device=ctx.device)
        ctx.compare(f"table (d={d}, layout {layout})", actual, oracle64, same)


@check(
    "positional.sinusoidal.bounded",
    claims=("positional.sinusoidal.bounded",),
    needs=POS,
    depends_on=(SHAPES,),
)
def bounded(ctx: CheckContext) -> None:
    """Every entry lies in [-1, 1], for 5000 positions."""
    for d in WIDTHS:
        t = table(ctx, 5000, d)
        ctx.expect_finite("positional table", t)
        ctx.compare_direct(f"table clamped to [-1, 1] (d={d})", t, t.double().clamp(-1.0, 1.0))


@check(
    "positional.sinusoidal.relative",
    claims=("positional.sinusoidal.relative-linear", "positional.sinusoidal.offset-dot-product"),
    needs=POS,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def relative(ctx: CheckContext) -> None:
    """PE(pos + k) = PE(pos) M_k^T with one rotation matrix per k (declared layout), and
    <PE(p), PE(p + k)> is the same for every p."""
    layout = ctx.conventions.sinusoidal_layout
    for d in WIDTHS:
        t = table(ctx, 64, d)
        t64 = t.double()
        for k in (1, 3, 17):
            m = shift_matrix(k, d, layout=layout, device=ctx.device)
            ctx.compare_direct(f"PE(pos + {k}) vs PE(pos) M_{k}^T (d={d})", t[k:], t64[:-k] @ m.T)
            dots = (t64[:-k] * t64[k:]).sum(dim=-1)
            ctx.compare_direct(
                f"<PE(p), PE(p + {k})> across p (d={d})", dots.to(t.dtype), dots[:1].expand_as(dots)
            )


@check(
    "positional.sinusoidal.any-length",
    claims=("positional.sinusoidal.any-length",),
    needs=POS,
    depends_on=(SHAPES,),
    kind="metamorphic",
)
def any_length(ctx: CheckContext) -> None:
    """A short table is the prefix of a long one: rows do not depend on the requested length."""
    for d in WIDTHS:
        long = table(ctx, 300, d)
        for n in (1, 10, 299):
            ctx.compare_direct(
                f"table of {n} rows vs prefix of 300 (d={d})", table(ctx, n, d), long[:n].double()
            )
