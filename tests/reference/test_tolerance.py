"""The tolerance policy itself (reference/tolerance.py): the numbers every other comparison relies on.

These tests use hand-computed cases, not outputs of the code under test.
"""

import pytest
import torch

from transformer_conformance.reference.tolerance import (
    TABLE,
    assert_close,
    assert_differs,
    differential,
    direct,
    max_abs_error,
    tolerance_for,
)

F64 = torch.float64


def test_every_audited_dtype_has_constants() -> None:
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        tol = tolerance_for(dtype)
        assert tol.multiple >= 1 and tol.floor > 0 and tol.atol > 0 and tol.rtol > 0
    # lower precision never gets a tighter budget than higher precision
    order = [torch.float64, torch.float32, torch.float16]
    assert [TABLE[d].floor for d in order] == sorted(TABLE[d].floor for d in order)


def test_unknown_dtype_is_an_error_not_a_default() -> None:
    with pytest.raises(ValueError, match="dtype"):
        tolerance_for(torch.int32)


def test_differential_allows_a_fixed_multiple_of_the_reference_error_plus_the_floor() -> None:
    oracle = torch.tensor([1.0, 2.0], dtype=F64)
    reference = torch.tensor([1.0, 2.0 + 1e-3], dtype=torch.float32)  # the dtype forces 1e-3 here
    tol = TABLE[torch.float32]
    forced = float(reference[1]) - 2.0  # 1e-3 as float32 represents it
    budget = tol.multiple * forced + tol.floor
    inside = torch.tensor([1.0, 2.0 + 0.9 * budget], dtype=torch.float32)
    outside = torch.tensor([1.0, 2.0 + 1.1 * budget], dtype=torch.float32)
    assert differential(inside, oracle, reference).ok
    result = differential(outside, oracle, reference)
    assert not result.ok and result.allowed == pytest.approx(budget, rel=1e-12)


def test_nan_in_the_target_is_an_infinite_error() -> None:
    oracle = torch.zeros(3, dtype=F64)
    actual = torch.tensor([0.0, float("nan"), 0.0])
    assert max_abs_error(actual, oracle) == float("inf")
    assert not differential(actual, oracle, torch.zeros(3)).ok
    assert not direct(actual, oracle).ok


def test_a_non_finite_reference_does_not_grant_an_infinite_budget() -> None:
    oracle = torch.tensor([1.0], dtype=F64)
    overflowed_reference = torch.tensor([float("inf")], dtype=torch.float16)
    far_off = torch.tensor([1000.0], dtype=torch.float16)
    result = differential(far_off, oracle, overflowed_reference)
    assert not result.ok and result.allowed < 1.0
    assert differential(torch.tensor([1.0], dtype=torch.float16), oracle, overflowed_reference).ok


def test_direct_rule_scales_with_the_oracle_magnitude() -> None:
    tol = TABLE[torch.float32]
    big = torch.tensor([1e4], dtype=F64)
    allowed = tol.atol + tol.rtol * 1e4
    assert direct((big + 0.9 * allowed).float(), big).ok
    assert not direct((big + 1.1 * allowed).float(), big).ok


def test_shape_mismatch_is_an_error_never_a_broadcast() -> None:
    with pytest.raises(ValueError, match="shape"):
        max_abs_error(torch.zeros(2, 1), torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match="shape"):
        direct(torch.zeros(1, 2), torch.zeros(2, dtype=F64))


def test_assert_close_reports_the_comparison() -> None:
    with pytest.raises(AssertionError, match="exceeds allowed"):
        assert_close(torch.tensor([1.0]), torch.tensor([2.0], dtype=F64), "value")
    assert_close(torch.tensor([1.0]), torch.tensor([1.0], dtype=F64))


def test_assert_differs_ignores_rounding_but_sees_a_real_change() -> None:
    base = torch.tensor([1.0, 2.0], dtype=F64)
    with pytest.raises(AssertionError, match="expected a difference"):
        assert_differs(base + 1e-14, base, "rounding")
    assert_differs(base + 1e-3, base, "a real change")


def test_nonfinite_error_says_which_side_holds_nan_never_allowed_nan() -> None:
    expected = torch.tensor([1.0, float("nan"), 3.0], dtype=F64)
    actual = torch.tensor([1.0, 2.0, float("inf")])
    result = direct(actual, expected)
    assert not result.ok and result.measured == float("inf")
    text = result.describe()
    assert "nan" not in text.lower().replace("nan/inf", "")  # no "allowed nan"
    # the finite budget: atol 1e-5 + rtol 1e-5 * |1.0|
    assert "1 in the value, 1 in the expected" in text and "at most 2.000e-05" in text
    result = differential(actual, expected.nan_to_num(2.0), expected.nan_to_num(2.0).float())
    assert "1 in the value" in result.describe() and "expected" not in result.describe()
