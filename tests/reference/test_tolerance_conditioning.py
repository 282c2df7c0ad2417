"""The differential rule with score conditioning (tolerance version 2).

Correct float32 attention kernels, written differently from the reference, stay inside the rule at
every score scale from 1 to 1e3 (a property over seeds, sizes and scales), and a planted bug is still
rejected at those scales. The closed-form cases compute the expected budget by hand.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st
from torch.nn.attention import SDPBackend, sdpa_kernel

from transformer_conformance.reference import tolerance
from transformer_conformance.reference.attention import scaled_dot_product_attention

F64 = torch.float64
SCALES = st.sampled_from([1.0, 3.0, 10.0, 100.0, 300.0, 1000.0])


def draw_inputs(seed: int, b: int, nq: int, nk: int, d: int, scale: float) -> tuple[torch.Tensor, ...]:
    """q (scores times ``scale``), k, v in float32, drawn in float64 from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, nq, d, generator=g, dtype=F64) * scale
    k = torch.randn(b, nk, d, generator=g, dtype=F64)
    v = torch.randn(b, nk, d, generator=g, dtype=F64)
    return q.float(), k.float(), v.float()


def hand_written(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A correct float32 kernel in another order: scores first, scaled afterwards."""
    weights = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v, weights


def sdpa_math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """torch's own SDPA, math backend (pre-scales q and k)."""
    with sdpa_kernel([SDPBackend.MATH]):
        out: torch.Tensor = F.scaled_dot_product_attention(q, k, v)
    return out


def judge(actual: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, what: str) -> bool:
    """The v2 differential rule for an attention output (``what="out"``) or weights."""
    out64, w64 = scaled_dot_product_attention(q.double(), k.double(), v.double())
    out32, w32 = scaled_dot_product_attention(q, k, v)
    c_out, c_w = tolerance.attention_score_conditioning(
        q, k, v, w64, out64, scale=q.shape[-1] ** -0.5, dtype=q.dtype
    )
    if what == "out":
        return tolerance.differential(actual, out64, out32, conditioning=c_out).ok
    return tolerance.differential(actual, w64, w32, conditioning=c_w).ok


SIZES = {
    "seed": st.integers(0, 2**31 - 1),
    "b": st.integers(1, 3),
    "nq": st.integers(1, 8),
    "nk": st.integers(1, 8),
    "d": st.integers(1, 9),
    "scale": SCALES,
}


@pytest.mark.claim("attention.formula")
@given(**SIZES)
def test_correct_float32_kernels_pass_at_every_score_scale(
    seed: int, b: int, nq: int, nk: int, d: int, scale: float
) -> None:
    q, k, v = draw_inputs(seed, b, nq, nk, d, scale)
    out, weights = hand_written(q, k, v)
    assert judge(out, q, k, v, "out")
    assert judge(weights, q, k, v, "weights")
    assert judge(sdpa_math(q, k, v), q, k, v, "out")


def values_off_by_one(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Planted bug: key j's weight picks up value row j + 1 (an index off by one, wrapping)."""
    _, weights = hand_written(q, k, v)
    return weights @ torch.roll(v, shifts=-1, dims=-2)


def scores_in_bfloat16(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Planted bug: a float32 kernel whose scores pass through bfloat16 (autocast left on)."""
    scores = ((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])).bfloat16().float()
    return torch.softmax(scores, dim=-1) @ v


@pytest.mark.claim("attention.formula")
@given(**{**SIZES, "nk": st.integers(2, 8)})
def test_planted_bugs_are_still_rejected_at_every_score_scale(
    seed: int, b: int, nq: int, nk: int, d: int, scale: float
) -> None:
    q, k, v = draw_inputs(seed, b, nq, nk, d, scale)
    out64, _ = scaled_dot_product_attention(q.double(), k.double(), v.double())
    shifted = values_off_by_one(q, k, v)
    assume(tolerance.max_abs_error(shifted, out64) > 0.1)  # value rows that differ visibly
    assert not judge(shifted, q, k, v, "out")
    rounded = scores_in_bfloat16(q, k, v)
    # bfloat16 scores can give the same softmax when one key dominates by far: judged where they do not
    if tolerance.max_abs_error(rounded, out64) > 0.1:
        assert not judge(rounded, q, k, v, "out")


def test_conditioning_adds_to_the_budget_element_by_element() -> None:
    tol = tolerance.TABLE[torch.float32]
    oracle = torch.tensor([1.0, 2.0], dtype=F64)
    reference = torch.tensor([1.0, 2.0], dtype=torch.float32)  # exact: no baseline error
    cond = torch.tensor([0.0, 1e-3], dtype=F64)
    budget = [tol.floor, tol.multiple * 1e-3 + tol.floor]
    inside = torch.tensor([1.0 + 0.5 * budget[0], 2.0 + 0.9 * budget[1]], dtype=F64).float()
    assert tolerance.differential(inside, oracle, reference, conditioning=cond).ok
    # the budget of element 1 does not lend itself to element 0
    outside = torch.tensor([1.0 + 2 * budget[0], 2.0], dtype=F64).float()
    result = tolerance.differential(outside, oracle, reference, conditioning=cond)
    assert not result.ok and result.allowed == pytest.approx(budget[0], rel=1e-6)


def test_score_conditioning_closed_form() -> None:
    # one query (2, 0), keys e1 and e2, values 1 and 3, scale 1: |q| |k|^T = (2, 0)
    q = torch.tensor([[2.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[1.0], [3.0]])
    w0 = math.exp(2) / (math.exp(2) + 1)
    w = torch.tensor([[w0, 1 - w0]], dtype=F64)
    out = torch.tensor([[w0 * 1 + (1 - w0) * 3]], dtype=F64)
    u = 2.0**-24
    e0 = (2 + 3) * u * 2.0  # (d + 3) u scale |q.k|, d = 2; the second score is exactly 0
    c_out, c_w = tolerance.attention_score_conditioning(q, k, v, w, out, scale=1.0, dtype=torch.float32)
    assert float(c_out[0, 0]) == pytest.approx(w0 * e0 * 1.0 + w0 * e0 * float(out[0, 0]), rel=1e-12)
    assert c_w[0].tolist() == pytest.approx([w0 * (e0 + w0 * e0), (1 - w0) * (0 + w0 * e0)], rel=1e-12)


def test_non_finite_target_fails_with_conditioning() -> None:
    oracle = torch.zeros(2, dtype=F64)
    actual = torch.tensor([0.0, float("nan")])
    result = tolerance.differential(actual, oracle, torch.zeros(2), conditioning=torch.ones(2, dtype=F64))
    assert not result.ok
