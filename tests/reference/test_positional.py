"""Positional encodings: the sinusoidal formula and properties, the learned table, rejected alternatives.

Each property is a ``check_*`` function that raises ``AssertionError``; it is run on the reference
(passes) and on a planted-bug mutant from ``mutants_pointwise`` (must be rejected).
"""

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from tests.reference import mutants_pointwise as mut
from transformer_conformance.reference.checking import ReferenceInputError
from transformer_conformance.reference.positional import (
    LearnedPositionalEncoding,
    binary_positions,
    integer_positions,
    normalized_positions,
    shift_matrix,
    sinusoidal_encoding,
)
from transformer_conformance.reference.tolerance import assert_close, direct

FIXTURE_OK = settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ]
)
Table = Callable[..., Tensor]
even_widths = st.integers(1, 8).map(lambda h: 2 * h)


def closed_form(num_positions: int, d_model: int, offset: int = 0, layout: str = "interleaved") -> Tensor:
    """The paper's formula element by element with ``math.sin``/``math.cos`` (float64)."""
    half = d_model // 2
    rows = []
    for pos in range(offset, offset + num_positions):
        row = [0.0] * d_model
        for i in range(half):
            angle = pos / 10000.0 ** (2 * i / d_model)
            s_col, c_col = (2 * i, 2 * i + 1) if layout == "interleaved" else (i, half + i)
            row[s_col], row[c_col] = math.sin(angle), math.cos(angle)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64).reshape(num_positions, d_model)


def reference_table(
    num_positions: int, d_model: int, *, offset: int = 0, dtype: torch.dtype = torch.float64
) -> Tensor:
    return sinusoidal_encoding(num_positions, d_model, offset=offset, dtype=dtype)


# --------------------------------------------------------------------------- formula


def check_formula(table: Table, num_positions: int, d_model: int, offset: int, dtype: torch.dtype) -> None:
    got = table(num_positions, d_model, offset=offset, dtype=dtype)
    assert got.dtype == dtype, f"dtype {got.dtype}, expected {dtype}"
    assert_close(got, closed_form(num_positions, d_model, offset), "sinusoidal table vs closed form")


@pytest.mark.claim("positional.sinusoidal.formula")
@FIXTURE_OK
@given(
    n=st.integers(1, 12),
    d=even_widths,
    offset=st.integers(0, 5000),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_formula_matches_closed_form(
    device: torch.device, n: int, d: int, offset: int, dtype: torch.dtype
) -> None:
    def on_device(num: int, width: int, *, offset: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
        out = sinusoidal_encoding(num, width, offset=offset, dtype=dtype, device=device)
        assert out.device.type == device.type
        return out

    check_formula(on_device, n, d, offset, dtype)


@pytest.mark.claim("positional.sinusoidal.formula")
@pytest.mark.parametrize(
    "mutant", [mut.sinusoidal_swapped, mut.sinusoidal_exponent_i, mut.sinusoidal_ignores_offset]
)
def test_formula_check_rejects_mutants(mutant: Table) -> None:
    with pytest.raises(AssertionError):
        check_formula(mutant, 6, 8, 3, torch.float64)


def test_base_size_table_first_rows() -> None:
    """Position 0 is [0, 1, 0, 1, ...]; position 1's first pair is (sin 1, cos 1) at d_model = 512."""
    pe = sinusoidal_encoding(2, 512, dtype=torch.float64)
    expected0 = torch.tensor([0.0, 1.0] * 256, dtype=torch.float64)
    assert_close(pe[0], expected0, "PE(0)")
    assert_close(pe[1, :2], torch.tensor([math.sin(1.0), math.cos(1.0)], dtype=torch.float64), "PE(1)[:2]")


# --------------------------------------------------------------------------- layouts


def check_concatenated_is_permutation(concatenated: Table, n: int, d: int) -> None:
    perm = list(range(0, d, 2)) + list(range(1, d, 2))
    interleaved = sinusoidal_encoding(n, d, dtype=torch.float64)
    assert_close(
        concatenated(n, d, dtype=torch.float64), interleaved[:, perm], "concatenated vs permuted interleaved"
    )


@pytest.mark.claim("positional.sinusoidal.formula")
@given(n=st.integers(1, 10), d=even_widths)
def test_concatenated_layout_is_column_permutation(n: int, d: int) -> None:
    def concatenated(num: int, width: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
        return sinusoidal_encoding(num, width, layout="concatenated", dtype=dtype)

    check_concatenated_is_permutation(concatenated, n, d)
    assert_close(concatenated(n, d), closed_form(n, d, layout="concatenated"), "concatenated vs closed form")


@pytest.mark.claim("positional.sinusoidal.formula")
def test_permutation_check_rejects_cos_first_layout() -> None:
    with pytest.raises(AssertionError):
        check_concatenated_is_permutation(mut.concatenated_cos_first, 5, 8)


# --------------------------------------------------------------------------- bounded


def check_bounded(table: Table, n: int, d: int, offset: int) -> None:
    values = table(n, d, offset=offset, dtype=torch.float64)
    assert bool(torch.isfinite(values).all()), "non-finite entries"
    worst = float(values.abs().max())
    assert worst <= 1.0, f"entry of magnitude {worst} outside [-1, 1]"


@pytest.mark.claim("positional.sinusoidal.bounded")
@given(n=st.integers(1, 64), d=even_widths, offset=st.integers(0, 10**6))
def test_bounded(n: int, d: int, offset: int) -> None:
    check_bounded(reference_table, n, d, offset)


@pytest.mark.claim("positional.sinusoidal.bounded")
def test_bounded_check_rejects_tangent() -> None:
    with pytest.raises(AssertionError):
        check_bounded(mut.sinusoidal_tan, 64, 8, 0)


# --------------------------------------------------------------------------- relative positions


def check_relative_linear(
    table: Table, shift: Callable[[int, int], Tensor], pos: int, k: int, d: int
) -> None:
    m = shift(k, d)
    rows = table(pos + 4, d, dtype=torch.float64)  # several positions share one matrix
    shifted = table(pos + 4, d, offset=k, dtype=torch.float64)
    assert_close(rows @ m.T, shifted, f"PE(p + {k}) vs PE(p) @ M_{k}.T")


@pytest.mark.claim("positional.sinusoidal.relative-linear")
@pytest.mark.parametrize("layout", ["interleaved", "concatenated"])
@given(pos=st.integers(0, 300), k=st.integers(0, 300), d=even_widths)
def test_relative_linear(layout: str, pos: int, k: int, d: int) -> None:
    def table(n: int, width: int, *, offset: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
        return sinusoidal_encoding(n, width, layout=layout, offset=offset, dtype=dtype)  # type: ignore[arg-type]

    def shift(kk: int, width: int) -> Tensor:
        return shift_matrix(kk, width, layout=layout)  # type: ignore[arg-type]

    check_relative_linear(table, shift, pos, k, d)


@pytest.mark.claim("positional.sinusoidal.relative-linear")
def test_shift_matrix_is_rotation_and_composes() -> None:
    """M_k is orthogonal, M_0 = I, M_a @ M_b = M_(a+b) and M_(-k) = M_k^T (block rotations)."""
    d = 8
    eye = torch.eye(d, dtype=torch.float64)
    assert_close(shift_matrix(0, d), eye, "M_0")
    assert_close(shift_matrix(5, d) @ shift_matrix(5, d).T, eye, "M_5 M_5^T")
    assert_close(shift_matrix(3, d) @ shift_matrix(4, d), shift_matrix(7, d), "M_3 M_4")
    assert_close(shift_matrix(-6, d), shift_matrix(6, d).T, "M_-6")


@pytest.mark.claim("positional.sinusoidal.relative-linear")
@pytest.mark.parametrize(
    ("table", "shift"),
    [
        (reference_table, lambda k, d: mut.shift_matrix_wrong_sign(k, d)),
        (mut.sinusoidal_swapped, lambda k, d: shift_matrix(k, d)),
    ],
    ids=["wrong-rotation-sign", "sin-cos-swapped"],
)
def test_relative_linear_check_rejects_mutants(table: Table, shift: Callable[[int, int], Tensor]) -> None:
    with pytest.raises(AssertionError):
        check_relative_linear(table, shift, 10, 3, 8)


def check_offset_dot_product(table: Table, p1: int, p2: int, k: int, d: int) -> None:
    def dot(p: int) -> Tensor:
        rows = table(k + 1, d, offset=p, dtype=torch.float64)
        return rows[0] @ rows[k]

    expected = math.fsum(math.cos(k / 10000.0 ** (2 * i / d)) for i in range(d // 2))
    assert_close(dot(p1), torch.tensor(expected, dtype=torch.float64), f"<PE({p1}), PE({p1}+{k})>")
    assert_close(dot(p2), torch.tensor(expected, dtype=torch.float64), f"<PE({p2}), PE({p2}+{k})>")


@pytest.mark.claim("positional.sinusoidal.offset-dot-product")
@given(p1=st.integers(0, 500), p2=st.integers(0, 500), k=st.integers(0, 50), d=even_widths)
def test_offset_dot_product_depends_only_on_k(p1: int, p2: int, k: int, d: int) -> None:
    check_offset_dot_product(reference_table, p1, p2, k, d)


@pytest.mark.claim("positional.sinusoidal.offset-dot-product")
def test_offset_dot_product_check_rejects_sin_only() -> None:
    with pytest.raises(AssertionError):
        check_offset_dot_product(mut.sinusoidal_sin_only, 3, 40, 5, 8)


# --------------------------------------------------------------------------- frequency sensitivity


def check_frequency_sensitivity(table: Table, d: int) -> None:
    """Mean step change of each sin/cos pair (interleaved) strictly decreases with the pair index."""
    pe = table(200, d, dtype=torch.float64)
    step = (pe[1:] - pe[:-1]).reshape(199, d // 2, 2).norm(dim=-1).mean(dim=0)
    for i in range(d // 2 - 1):
        assert float(step[i + 1]) < float(step[i]), f"pair {i + 1} moves {float(step[i + 1])} >= pair {i}"


@pytest.mark.claim("positional.sinusoidal.frequency-sensitivity")
@pytest.mark.parametrize("d", [4, 16, 512])
def test_frequency_sensitivity(d: int) -> None:
    check_frequency_sensitivity(reference_table, d)
    # Per step, pair i moves along its unit circle by the chord 2 sin(w_i / 2), exactly.
    pe = reference_table(3, d)
    chords = torch.tensor(
        [2 * math.sin(0.5 / 10000.0 ** (2 * i / d)) for i in range(d // 2)], dtype=torch.float64
    )
    assert_close((pe[2] - pe[1]).reshape(d // 2, 2).norm(dim=-1), chords, "step of each pair")


@pytest.mark.claim("positional.sinusoidal.frequency-sensitivity")
def test_frequency_check_rejects_rising_frequencies() -> None:
    with pytest.raises(AssertionError):
        check_frequency_sensitivity(mut.sinusoidal_rising_frequency, 16)


# --------------------------------------------------------------------------- any length


def check_length_independent(table: Table, n: int, m: int, d: int) -> None:
    short, long = table(n, d, dtype=torch.float64), table(m, d, dtype=torch.float64)
    assert_close(short, long[:n], f"table of {n} vs first rows of table of {m}")


@pytest.mark.claim("positional.sinusoidal.any-length")
@given(n=st.integers(1, 30), extra=st.integers(1, 200), d=even_widths)
def test_length_independent(n: int, extra: int, d: int) -> None:
    check_length_independent(reference_table, n, n + extra, d)


@pytest.mark.claim("positional.sinusoidal.any-length")
@given(offset=st.integers(0, 5000), n=st.integers(1, 8), d=even_widths)
def test_offset_equals_slice_of_longer_table(offset: int, n: int, d: int) -> None:
    """Incremental decoding: the table at ``offset`` is the slice of a table that starts at 0."""
    assert_close(
        reference_table(n, d, offset=offset), reference_table(offset + n, d)[offset:], "offset slice"
    )


@pytest.mark.claim("positional.sinusoidal.any-length", "positional.max-length-as-stated")
def test_positions_far_beyond_any_training_length() -> None:
    far = sinusoidal_encoding(2, 8, offset=100_000, dtype=torch.float64)
    assert_close(far, closed_form(2, 8, offset=100_000), "positions 100000, 100001")
    assert sinusoidal_encoding(5000, 8).shape == (5000, 8)  # no maximum length


@pytest.mark.claim("positional.sinusoidal.any-length")
def test_length_check_rejects_length_normalised() -> None:
    with pytest.raises(AssertionError):
        check_length_independent(mut.sinusoidal_length_normalised, 5, 50, 8)


# --------------------------------------------------------------------------- learned table


def check_rejects_past_max_len(make: Callable[[int, int], LearnedPositionalEncoding], max_len: int) -> None:
    table = make(max_len, 8)
    assert table(max_len).shape == (max_len, 8)
    assert table(24, offset=max_len - 24).shape == (24, 8)
    for length, offset in [(max_len + 1, 0), (25, max_len - 24)]:
        try:
            table(length, offset=offset)
        except ReferenceInputError as err:
            message = str(err)
            assert "'length'" in message and str(max_len) in message and str(length) in message, message
        else:
            raise AssertionError(f"length {length} at offset {offset} accepted by a table of {max_len}")


@pytest.mark.claim("positional.learned.max-length", "sizes.gpt2-context", "positional.max-length-as-stated")
def test_learned_table_gpt2_context(device: torch.device) -> None:
    def make(max_len: int, d: int) -> LearnedPositionalEncoding:
        return LearnedPositionalEncoding(max_len, d).to(device)

    check_rejects_past_max_len(make, 1024)
    table = make(1024, 8)
    assert torch.equal(table(3, offset=5), table.weight[5:8])


@pytest.mark.claim("positional.learned.max-length")
def test_max_len_check_rejects_wrapping_table() -> None:
    with pytest.raises(AssertionError):
        check_rejects_past_max_len(mut.WrappingLearnedPositions, 1024)


# --------------------------------------------------------------------------- rejected alternatives


def exceeds_bound(table: Table, bound: float) -> bool:
    """Whether some sequence length makes an entry exceed ``bound`` (tries lengths up to 10 * bound)."""
    return any(float(table(n).abs().max()) > bound for n in (int(bound) + 2, int(10 * bound) + 2))


@pytest.mark.claim("positional.integer.unbounded")
@pytest.mark.parametrize("bound", [1.0, 100.0, 5000.0])
def test_integer_positions_unbounded(bound: float) -> None:
    assert exceeds_bound(integer_positions, bound)
    assert float(integer_positions(10_000).max()) == 9999.0
    # The same detector finds no excess for the sinusoidal table (bounded by 1).
    assert not exceeds_bound(lambda n: sinusoidal_encoding(n, 8, dtype=torch.float64), 1.0)


def spacing_depends_on_length(table: Table) -> bool:
    """Whether neighbour spacing differs between sequences of 5 and of 11 positions."""
    gaps = [float(table(n)[1, 0] - table(n)[0, 0]) for n in (5, 11)]
    return gaps[0] != gaps[1]


@pytest.mark.claim("positional.normalized.length-dependent")
def test_normalized_positions_length_dependent() -> None:
    assert spacing_depends_on_length(normalized_positions)
    assert float(normalized_positions(5)[1, 0]) == 0.25 and float(normalized_positions(11)[1, 0]) == 0.1
    assert float(normalized_positions(11).max()) == 1.0 and float(normalized_positions(11).min()) == 0.0
    assert not spacing_depends_on_length(integer_positions)  # the check's contrast: spacing 1 always


def full_unit_flips(table: Tensor, pos: int) -> int:
    """How many dimensions change by a full unit (or more) between positions ``pos`` and ``pos + 1``."""
    return int(((table[pos + 1] - table[pos]).abs() >= 1.0).sum())


@pytest.mark.claim("positional.binary.discontinuous")
def test_binary_positions_discontinuous() -> None:
    table = binary_positions(16, 8)
    assert table[7].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert table[8].tolist() == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert full_unit_flips(table, 7) == 4
    # Contrast: no sinusoidal dimension jumps by a whole unit between neighbours.
    pe = sinusoidal_encoding(1000, 8, dtype=torch.float64)
    assert max(full_unit_flips(pe, p) for p in range(999)) == 0


# --------------------------------------------------------------------------- order information


def order_changes_output(table: Tensor, x: Tensor) -> bool:
    """Self-attention over ``x + table``: does permuting the tokens do more than permute the outputs?"""
    from transformer_conformance.reference.attention import scaled_dot_product_attention

    perm = torch.tensor([3, 0, 4, 1, 5, 2], device=x.device)

    def attend(tokens: Tensor) -> Tensor:
        h = tokens + table
        out, _ = scaled_dot_product_attention(h, h, h)
        return out

    return not direct(attend(x[:, perm]), attend(x)[:, perm]).ok


@pytest.mark.claim("positional.needed-for-order")
def test_positions_needed_for_order(device: torch.device) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 6, 8, generator=gen, dtype=torch.float64).to(device)
    pe = sinusoidal_encoding(6, 8, dtype=torch.float64, device=device)
    assert not order_changes_output(torch.zeros_like(pe), x)  # no positions: outputs just permute
    assert order_changes_output(pe, x)
    assert order_changes_output(LearnedPositionalEncoding(6, 8).to(device, torch.float64)(6).detach(), x)


@pytest.mark.claim("positional.needed-for-order")
def test_order_check_rejects_constant_positions() -> None:
    x = torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert not order_changes_output(mut.constant_positions(6, 8), x)
