"""Positional encodings: the sinusoidal table, a learned table, and the rejected alternatives.

The sinusoidal table is computed in float64 and cast once at the end, so every dtype sees the
correctly rounded value. Layout ``interleaved`` puts sin/cos of one frequency in columns ``2i`` and
``2i+1`` (as the paper); ``concatenated`` puts all sines first, then all cosines (a declared
alternative used by several libraries). Both layouts hold the same columns in a different order.
"""

import math
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

from transformer_conformance.reference.checking import ReferenceInputError, checked, require

Layout = Literal["interleaved", "concatenated"]
LAYOUTS: tuple[str, ...] = ("interleaved", "concatenated")


def _require_layout_and_width(layout: str, d_model: int, base: float) -> None:
    require(layout in LAYOUTS, "layout", f"one of {LAYOUTS}", repr(layout))
    require(d_model > 0 and d_model % 2 == 0, "d_model", "a positive even integer (sin/cos pairs)", d_model)
    require(math.isfinite(base) and base > 1.0, "base", "a finite number > 1", base)


def frequencies(d_model: int, *, base: float | int = 10000.0) -> Float[Tensor, " half"]:
    """Angular frequency of each sin/cos pair, ``1 / base^(2i/d_model)``, in float64, highest first.

    Claims: positional.sinusoidal.formula, positional.sinusoidal.frequency-sensitivity.
    """
    _require_layout_and_width("interleaved", d_model, float(base))
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    return torch.pow(torch.tensor(float(base), dtype=torch.float64), -two_i / d_model)


def _pair_columns(d_model: int, layout: str) -> tuple[Tensor, Tensor]:
    """Column indices of the sin and the cos member of each frequency pair."""
    half = d_model // 2
    i = torch.arange(half)
    if layout == "interleaved":
        return 2 * i, 2 * i + 1
    return i, half + i


@checked
def sinusoidal_encoding(
    num_positions: int,
    d_model: int,
    *,
    layout: Layout = "interleaved",
    offset: int = 0,
    base: float | int = 10000.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Float[Tensor, "{num_positions} {d_model}"]:
    """Fixed sinusoidal table for positions ``offset .. offset + num_positions - 1``.

    ``PE[pos, 2i] = sin(pos / base^(2i/d))``, ``PE[pos, 2i+1] = cos(pos / base^(2i/d))`` (interleaved);
    ``concatenated`` stores ``[sin ... | cos ...]``. ``offset`` serves incremental decoding: row ``j``
    is the encoding of absolute position ``offset + j``. No maximum length: any position is defined.

    Claims: positional.sinusoidal.formula, positional.sinusoidal.bounded, positional.sinusoidal.any-length,
    positional.max-length-as-stated.
    """
    _require_layout_and_width(layout, d_model, float(base))
    require(num_positions >= 0, "num_positions", "an integer >= 0", num_positions)
    require(offset >= 0, "offset", "an integer >= 0", offset)
    require(dtype.is_floating_point, "dtype", "a floating-point dtype", dtype)
    positions = torch.arange(offset, offset + num_positions, dtype=torch.float64)
    angles = positions[:, None] * frequencies(d_model, base=base)[None, :]
    table = torch.empty(num_positions, d_model, dtype=torch.float64)
    sin_cols, cos_cols = _pair_columns(d_model, layout)
    table[:, sin_cols] = torch.sin(angles)
    table[:, cos_cols] = torch.cos(angles)
    return table.to(dtype=dtype, device=device)


@checked
def shift_matrix(
    k: int,
    d_model: int,
    *,
    layout: Layout = "interleaved",
    base: float | int = 10000.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Float[Tensor, "{d_model} {d_model}"]:
    """Matrix ``M_k`` with ``PE(pos + k) == PE(pos) @ M_k.T`` for every position (row vectors).

    ``M_k`` is block-diagonal up to the layout's column order: one 2x2 rotation by angle ``k * w_i``
    per frequency ``w_i``; it depends on ``k`` only, never on ``pos``. ``dtype``/``device`` are an
    extension of the documented signature (default float64 on the CPU).

    Claims: positional.sinusoidal.relative-linear.
    """
    _require_layout_and_width(layout, d_model, float(base))
    theta = float(k) * frequencies(d_model, base=base)
    c, s = torch.cos(theta), torch.sin(theta)
    sin_cols, cos_cols = _pair_columns(d_model, layout)
    m = torch.zeros(d_model, d_model, dtype=torch.float64)
    # sin(a + t) = sin(a) cos(t) + cos(a) sin(t);  cos(a + t) = cos(a) cos(t) - sin(a) sin(t)
    m[sin_cols, sin_cols] = c
    m[sin_cols, cos_cols] = s
    m[cos_cols, sin_cols] = -s
    m[cos_cols, cos_cols] = c
    return m.to(dtype=dtype, device=device)


class LearnedPositionalEncoding(nn.Module):
    """A trained table of ``max_len`` position vectors (GPT-2: 1024): longer inputs are errors.

    Claims: positional.learned.max-length, positional.max-length-as-stated, sizes.gpt2-context.
    """

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        require(max_len > 0, "max_len", "a positive integer", max_len)
        require(d_model > 0, "d_model", "a positive integer", d_model)
        self.max_len = max_len
        self.d_model = d_model
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * 0.02)

    @checked
    def forward(self, length: int, offset: int = 0) -> Float[Tensor, "{length} {self.d_model}"]:
        """Rows ``offset .. offset + length - 1`` of the table.

        Claims: positional.learned.max-length, sizes.gpt2-context.
        """
        require(offset >= 0, "offset", "an integer >= 0", offset)
        require(length >= 0, "length", "an integer >= 0", length)
        if offset + length > self.max_len:
            raise ReferenceInputError(
                f"argument 'length': expected offset + length <= max_len = {self.max_len} "
                f"(positions 0..{self.max_len - 1}), got length {length} at offset {offset} "
                f"(last position {offset + length - 1})"
            )
        rows: Tensor = self.weight[offset : offset + length]
        return rows


@checked
def integer_positions(n: int, *, dtype: torch.dtype = torch.float64) -> Float[Tensor, "{n} 1"]:
    """Rejected alternative 1: position ``p`` encoded as the number ``p`` (one column).

    Claims: positional.integer.unbounded.
    """
    require(n >= 0, "n", "an integer >= 0", n)
    return torch.arange(n, dtype=dtype)[:, None]


@checked
def normalized_positions(n: int, *, dtype: torch.dtype = torch.float64) -> Float[Tensor, "{n} 1"]:
    """Rejected alternative 2: position ``p`` of ``n`` encoded as ``p / (n - 1)`` in ``[0, 1]``.

    Claims: positional.normalized.length-dependent.
    """
    require(n >= 0, "n", "an integer >= 0", n)
    steps = torch.arange(n, dtype=torch.float64)
    values = steps / (n - 1) if n > 1 else steps
    return values.to(dtype)[:, None]


@checked
def binary_positions(
    n: int, d_model: int, *, dtype: torch.dtype = torch.float64
) -> Float[Tensor, "{n} {d_model}"]:
    """Rejected alternative 3: position ``p`` as its ``d_model`` binary digits (column j = bit j, LSB first).

    Claims: positional.binary.discontinuous.
    """
    require(d_model > 0, "d_model", "a positive integer", d_model)
    require(n >= 0, "n", "an integer >= 0", n)
    require(
        d_model >= 63 or n <= 2**d_model, "n", f"at most 2**d_model = {2 ** min(d_model, 62)} positions", n
    )
    bits = torch.arange(min(d_model, 62))
    values = (torch.arange(n)[:, None] >> bits[None, :]) & 1
    table = torch.zeros(n, d_model, dtype=dtype)
    table[:, : bits.numel()] = values.to(dtype)
    return table
