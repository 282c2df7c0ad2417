"""RMSNorm: the formula (plain and 1 + w gain), scale invariance and the lack of shift invariance."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.reference import mutants_variants as mut
from tests.reference.variant_helpers import rand
from transformer_conformance.reference.rmsnorm import RMSNorm, rms_norm
from transformer_conformance.reference.tolerance import assert_close, assert_differs


def check_formula(norm_fn, d: int, eps: float, offset: bool, seed: int) -> None:
    x, w = rand((2, 3, d), seed, 3.0), rand((d,), seed + 1)
    rms = torch.sqrt((x**2).sum(-1, keepdim=True) / d + eps)
    gain = 1.0 + w if offset else w
    assert_close(norm_fn(x, w, eps, offset=offset), x / rms * gain, f"RMSNorm (offset={offset})")


@pytest.mark.claim("rmsnorm.formula")
@given(
    d=st.integers(2, 16),
    eps=st.sampled_from([0.0, 1e-6, 1e-2]),
    offset=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_formula(d, eps, offset, seed) -> None:
    check_formula(rms_norm, d, eps, offset, seed)


@pytest.mark.claim("rmsnorm.formula")
def test_module_starts_as_identity_gain() -> None:
    x = rand((2, 5), 0)
    for offset in (False, True):
        module = RMSNorm(5, 1e-6, offset=offset).double()
        assert_close(module(x), rms_norm(x, None, 1e-6), f"fresh module (offset={offset})")


@pytest.mark.claim("rmsnorm.formula")
@pytest.mark.parametrize(
    ("mutant", "offset"), [(mut.rms_norm_centered, False), (mut.rms_norm_ignores_offset, True)]
)
def test_formula_check_rejects_mutants(mutant, offset) -> None:
    with pytest.raises(AssertionError):
        check_formula(mutant, 6, 1e-6, offset, 0)


def check_scale_not_shift(norm_fn, d: int, c: float, seed: int) -> None:
    x, w = rand((3, d), seed), rand((d,), seed + 1)
    base = norm_fn(x, w, 0.0)
    assert_close(norm_fn(c * x, w, 0.0), base, f"scaled by {c}")
    assert_close(norm_fn(-c * x, w, 0.0), -base, f"scaled by {-c}")
    assert_differs(norm_fn(x + 1.5, w, 0.0), base, "shifted by 1.5")


@pytest.mark.claim("rmsnorm.scale-invariant")
@given(d=st.integers(2, 16), c=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_scale_invariant_not_shift_invariant(d, c, seed) -> None:
    check_scale_not_shift(rms_norm, d, c, seed)


@pytest.mark.claim("rmsnorm.scale-invariant")
def test_scale_check_rejects_mean_subtraction() -> None:
    with pytest.raises(AssertionError):
        check_scale_not_shift(mut.rms_norm_centered, 6, 2.0, 0)
