"""Rotary position embedding: relative scores, rotation, frequencies, declared layouts, order-awareness."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

from tests.reference import mutants_variants as mut
from tests.reference.variant_helpers import FIXTURE_OK, rand
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.rotary import apply_rotary, pair_columns, rotary_width
from transformer_conformance.reference.tolerance import assert_close, assert_differs

LAYOUTS = st.sampled_from(["half", "interleaved"])
WIDTHS = st.sampled_from([(4, 1.0), (8, 1.0), (8, 0.5), (12, 0.5), (16, 0.25), (16, 1.0)])


def rotate(rope, x: Tensor, positions: list[int], layout: str, fraction: float) -> Tensor:
    """``rope`` applied to ``x [1, h, l, d]`` at ``positions``."""
    return rope(x, torch.tensor([positions]), theta=10000.0, fraction=fraction, layout=layout)


def check_relative(rope, d: int, fraction: float, layout: str, m: int, n: int, shift: int, seed: int) -> None:
    """``rot(q, m) . rot(k, n) == rot(q, m + s) . rot(k, n + s)``."""
    q, k = rand((1, 1, 1, d), seed), rand((1, 1, 1, d), seed + 1)

    def score(a: int, b: int) -> Tensor:
        return (rotate(rope, q, [a], layout, fraction) * rotate(rope, k, [b], layout, fraction)).sum()

    assert_close(
        score(m + shift, n + shift), score(m, n).double(), f"score at m={m}, n={n} shifted by {shift}"
    )


@pytest.mark.claim("rotary.relative-dot-product")
@FIXTURE_OK
@given(
    width=WIDTHS,
    layout=LAYOUTS,
    m=st.integers(0, 40),
    n=st.integers(0, 40),
    shift=st.integers(1, 500),
    seed=st.integers(0, 2**16),
)
def test_score_depends_only_on_distance(width, layout, m, n, shift, seed) -> None:
    check_relative(apply_rotary, *width, layout, m, n, shift, seed)


@pytest.mark.claim("rotary.relative-dot-product")
def test_relative_check_rejects_non_rotation() -> None:
    with pytest.raises(AssertionError):
        check_relative(mut.rotary_sign_error, 8, 1.0, "half", 3, 1, 7, 0)


def check_rotation(rope, d: int, fraction: float, layout: str, m: int, n: int, seed: int) -> None:
    """Norms kept, position 0 the identity, rotations compose additively."""
    x = rand((2, 3, 1, d), seed)
    once = rotate(rope, x, [m], layout, fraction)
    assert_close(once.norm(dim=-1), x.norm(dim=-1), "norm after rotation")
    assert_close(rotate(rope, x, [0], layout, fraction), x, "rotation at position 0")
    assert_close(
        rotate(rope, once, [n], layout, fraction),
        rotate(rope, x, [m + n], layout, fraction).double(),
        "rotate by m then n vs by m + n",
    )


@pytest.mark.claim("rotary.norm-preserving")
@FIXTURE_OK
@given(width=WIDTHS, layout=LAYOUTS, m=st.integers(0, 100), n=st.integers(0, 100), seed=st.integers(0, 2**16))
def test_rotation_preserves_norm_and_composes(width, layout, m, n, seed) -> None:
    check_rotation(apply_rotary, *width, layout, m, n, seed)


@pytest.mark.claim("rotary.norm-preserving")
def test_rotation_check_rejects_sign_error() -> None:
    with pytest.raises(AssertionError):
        check_rotation(mut.rotary_sign_error, 8, 1.0, "interleaved", 5, 2, 0)


def check_frequencies(rope, d: int, fraction: float, layout: str, p: int) -> None:
    """A unit vector on the first member of pair i turns by ``p * theta^(-2i/d_rot)``; other columns stay."""
    d_rot = int(d * fraction)
    first, second = (list(c) for c in pair_columns(d_rot, layout))
    for i in range(d_rot // 2):
        e = torch.zeros(1, 1, 1, d, dtype=torch.float64)
        e[..., int(first[i])] = 1.0
        angle = p * math.pow(10000.0, -2.0 * i / d_rot)
        expected = torch.zeros_like(e)
        expected[..., int(first[i])] = math.cos(angle)
        expected[..., int(second[i])] = math.sin(angle)
        assert_close(rotate(rope, e, [p], layout, fraction), expected, f"pair {i} at position {p}")
    rest = torch.zeros(1, 1, 1, d, dtype=torch.float64)
    rest[..., d_rot:] = 1.0
    assert_close(rotate(rope, rest, [p], layout, fraction), rest, "columns beyond the rotary width")


@pytest.mark.claim("rotary.frequencies")
@FIXTURE_OK
@given(width=WIDTHS, layout=LAYOUTS, p=st.integers(0, 300))
def test_frequencies_and_rotary_width(width, layout, p) -> None:
    check_frequencies(apply_rotary, *width, layout, p)


@pytest.mark.claim("rotary.frequencies")
@pytest.mark.parametrize("mutant", [mut.rotary_frequency_missing_two, mut.rotary_frequency_head_width])
def test_frequency_check_rejects_wrong_formula(mutant) -> None:
    with pytest.raises(AssertionError):
        check_frequencies(mutant, 8, 0.5, "half", 7)


@pytest.mark.claim("rotary.frequencies")
def test_odd_rotary_width_is_an_error() -> None:
    with pytest.raises(ValueError, match="fraction"):
        rotary_width(6, 0.5)


def rotate_half_reference(x: Tensor, p: int) -> Tensor:
    """Hugging Face Llama's formula, written out: ``x cos + rotate_half(x) sin`` with ``cat(f, f)`` angles."""
    d = x.shape[-1]
    freqs = torch.tensor([p * math.pow(10000.0, -2.0 * i / d) for i in range(d // 2)], dtype=torch.float64)
    angles = torch.cat([freqs, freqs])
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * torch.cos(angles) + torch.cat([-x2, x1], dim=-1) * torch.sin(angles)


def check_layouts(rope, d: int, p: int, seed: int) -> None:
    """Half is rotate_half; interleaved is half after the column permutation; they differ on one input."""
    x = rand((1, 2, 1, d), seed)
    half = rotate(rope, x, [p], "half", 1.0)
    assert_close(half, rotate_half_reference(x, p), "half layout vs rotate_half")
    perm = torch.stack([torch.arange(d // 2), torch.arange(d // 2) + d // 2], dim=1).flatten()
    assert_close(
        rotate(rope, x[..., perm], [p], "interleaved", 1.0), half[..., perm].double(), "permuted layouts"
    )
    assert_differs(rotate(rope, x, [p], "interleaved", 1.0), half, "interleaved vs half on the same input")


@pytest.mark.claim("rotary.layouts")
@FIXTURE_OK
@given(d=st.sampled_from([4, 8, 16]), p=st.integers(1, 50), seed=st.integers(0, 2**16))
def test_layouts_are_declared_permutations(d, p, seed) -> None:
    check_layouts(apply_rotary, d, p, seed)


@pytest.mark.claim("rotary.layouts")
def test_layout_check_rejects_pairing_mismatch() -> None:
    with pytest.raises(AssertionError):
        check_layouts(mut.rotary_wrong_pairing, 8, 3, 0)


def check_order_aware(rope, length: int, seed: int) -> None:
    """Permuting the tokens permutes plain attention's output, but not attention with rotated q and k."""
    x = rand((1, 2, length, 8), seed)
    perm = torch.roll(torch.arange(length), 1)
    positions = list(range(length))

    def attend(inp: Tensor, use_rope: bool) -> Tensor:
        q = rotate(rope, inp, positions, "half", 1.0) if use_rope else inp
        return scaled_dot_product_attention(q, q, inp)[0]

    assert_close(
        attend(x[:, :, perm], False), attend(x, False)[:, :, perm].double(), "no positions: equivariant"
    )
    assert_differs(attend(x[:, :, perm], True), attend(x, True)[:, :, perm], "rotary: order-aware")


@pytest.mark.claim("rotary.breaks-permutation-equivariance")
@FIXTURE_OK
@given(length=st.integers(3, 7), seed=st.integers(0, 2**16))
def test_rotary_breaks_permutation_equivariance(length, seed) -> None:
    check_order_aware(apply_rotary, length, seed)


@pytest.mark.claim("rotary.breaks-permutation-equivariance")
def test_order_check_rejects_rotary_without_positions() -> None:
    with pytest.raises(AssertionError):
        check_order_aware(mut.rotary_ignores_positions, 5, 0)
