"""Rotary position embedding (RoPE): rotate pairs of query/key columns by position-dependent angles.

The first ``d_rot = int(d_head * fraction)`` columns of a head (``d_rot`` even) form ``d_rot / 2``
pairs; pair ``i`` at position ``p`` is rotated by the angle ``p * theta^(-2i / d_rot)``. The remaining
``d_head - d_rot`` columns pass unchanged (GPT-NeoX's partial rotary). Which columns form a pair is
declared, never guessed:

- ``half`` (``rotate_half``, Hugging Face Llama/NeoX): pair ``i`` is columns ``(i, i + d_rot/2)``;
- ``interleaved`` (GPT-J, the RoFormer paper): pair ``i`` is columns ``(2i, 2i + 1)``.

Both rotate each pair ``(a, b)`` to ``(a cos t - b sin t, b cos t + a sin t)``. Angles are computed
in float64 and the rotation runs in at least float32, cast back to the input dtype.
"""

from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from transformer_conformance.reference.checking import checked, require, require_floating

RopeLayout = Literal["half", "interleaved"]
ROPE_LAYOUTS: tuple[str, ...] = ("half", "interleaved")


def rotary_width(d_head: int, fraction: float) -> int:
    """Number of rotated columns: ``int(d_head * fraction)``, which must be even and positive.

    Claims: rotary.frequencies.
    """
    require(0.0 < fraction <= 1.0, "fraction", "a rotary fraction in (0, 1]", fraction)
    d_rot = int(d_head * fraction)
    require(d_rot > 0 and d_rot % 2 == 0, "fraction", f"an even rotated width of d_head={d_head}", d_rot)
    return d_rot


def rotary_frequencies(d_rot: int, theta: float = 10000.0) -> Float[Tensor, " half"]:
    """Angular frequency of each pair, ``theta^(-2i / d_rot)`` for ``i = 0 .. d_rot/2 - 1`` (float64).

    Claims: rotary.frequencies.
    """
    require(d_rot > 0 and d_rot % 2 == 0, "d_rot", "a positive even width", d_rot)
    require(theta > 1.0, "theta", "a base > 1", theta)
    two_i = torch.arange(0, d_rot, 2, dtype=torch.float64)
    return torch.pow(torch.tensor(float(theta), dtype=torch.float64), -two_i / d_rot)


def pair_columns(d_rot: int, layout: str) -> tuple[Tensor, Tensor]:
    """Column indices ``(first, second)`` of each rotated pair under ``layout``.

    Claims: rotary.layouts.
    """
    require(layout in ROPE_LAYOUTS, "layout", f"one of {ROPE_LAYOUTS}", repr(layout))
    i = torch.arange(d_rot // 2)
    if layout == "half":
        return i, i + d_rot // 2
    return 2 * i, 2 * i + 1


@checked
def apply_rotary(
    x: Float[Tensor, "batch heads length d_head"],
    positions: Int[Tensor, "#batch length"] | Int[Tensor, " length"],
    *,
    theta: float = 10000.0,
    fraction: float = 1.0,
    layout: RopeLayout = "half",
) -> Float[Tensor, "batch heads length d_head"]:
    """Rotate queries or keys ``x`` at the absolute ``positions`` (one id per batch row and column).

    Apply it to q and k *before* caching k: a cached key keeps the rotation of its own position.

    Claims: rotary.relative-dot-product, rotary.norm-preserving, rotary.frequencies, rotary.layouts,
    rotary.breaks-permutation-equivariance, lm.variant-cache-equals-recompute.
    """
    require_floating("x", x)
    require(layout in ROPE_LAYOUTS, "layout", f"one of {ROPE_LAYOUTS}", repr(layout))
    d_rot = rotary_width(x.shape[-1], fraction)
    pos = positions if positions.dim() == 2 else positions.unsqueeze(0)
    angles = pos.to(torch.float64)[..., None] * rotary_frequencies(d_rot, theta).to(x.device)  # [b, l, half]
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    cos = torch.cos(angles).to(work)[:, None]  # [b|1, 1, l, half]
    sin = torch.sin(angles).to(work)[:, None]
    rot, rest = x[..., :d_rot].to(work), x[..., d_rot:]
    half = d_rot // 2
    if layout == "half":  # pair i = columns (i, i + half), as pair_columns says
        a, b = rot[..., :half], rot[..., half:]
    else:  # pair i = columns (2i, 2i + 1)
        pairs = rot.reshape(*rot.shape[:-1], half, 2)
        a, b = pairs[..., 0], pairs[..., 1]
    turned_a, turned_b = a * cos - b * sin, b * cos + a * sin
    if layout == "half":
        rotated = torch.cat([turned_a, turned_b], dim=-1)
    else:
        rotated = torch.stack([turned_a, turned_b], dim=-1).flatten(-2)
    return torch.cat([rotated.to(x.dtype), rest], dim=-1)
