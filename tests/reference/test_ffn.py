"""Position-wise FFN: the formula d_model -> d_ff -> d_model, and no mixing between positions."""

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from tests.reference import mutants_pointwise as mut
from transformer_conformance.reference.ffn import PositionWiseFFN
from transformer_conformance.reference.tolerance import assert_close

FIXTURE_OK = settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ]
)


def inputs(shape: tuple[int, ...], seed: int, device: str | torch.device = "cpu") -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(device)


def check_formula(ffn: Any, x: Tensor, activation: str) -> None:
    """``W2 act(W1 x + b1) + b2`` written with explicit matrix products (and erf for GELU)."""
    w1, b1 = ffn.w_1.weight.detach().double(), ffn.w_1.bias.detach().double()
    w2, b2 = ffn.w_2.weight.detach().double(), ffn.w_2.bias.detach().double()
    assert w1.shape[0] > w1.shape[1] == w2.shape[0] and w2.shape[1] == w1.shape[0], (
        "not d_model -> d_ff -> d_model"
    )
    pre = x.double() @ w1.T + b1
    if activation == "relu":
        hidden = torch.where(pre > 0, pre, torch.zeros_like(pre))
    else:
        hidden = pre * 0.5 * (1.0 + torch.erf(pre / math.sqrt(2.0)))
    assert_close(ffn(x), hidden @ w2.T + b2, f"FFN ({activation}) vs explicit formula")


@pytest.mark.claim("ffn.widen-then-project")
@FIXTURE_OK
@given(
    d_model=st.integers(1, 8),
    widen=st.integers(2, 4),
    activation=st.sampled_from(["relu", "gelu"]),
    seed=st.integers(0, 2**16),
)
def test_formula(device: torch.device, d_model: int, widen: int, activation: str, seed: int) -> None:
    ffn = PositionWiseFFN(d_model, widen * d_model, activation=activation).to(device, torch.float64)  # type: ignore[arg-type]
    check_formula(ffn, inputs((2, 3, d_model), seed, device), activation)


@pytest.mark.claim("ffn.widen-then-project", "sizes.base")
def test_base_sizes_512_2048_512(device: torch.device) -> None:
    ffn = PositionWiseFFN(512, 2048).to(device)
    assert tuple(ffn.w_1.weight.shape) == (2048, 512) and tuple(ffn.w_2.weight.shape) == (512, 2048)
    x = torch.randn(1, 3, 512, generator=torch.Generator().manual_seed(0)).to(device)
    assert ffn.hidden(x).shape == (1, 3, 2048)
    assert ffn(x).shape == (1, 3, 512)
    assert set(dict(ffn.named_parameters())) == {"w_1.weight", "w_1.bias", "w_2.weight", "w_2.bias"}


@pytest.mark.claim("ffn.widen-then-project")
def test_formula_check_rejects_missing_activation() -> None:
    with pytest.raises(AssertionError):
        check_formula(mut.LinearFFN(4, 16).double(), inputs((2, 3, 4), 0), "relu")


def check_position_wise(ffn: Callable[[Tensor], Tensor], x: Tensor, position: int) -> None:
    """Perturbing one position changes no other; each position equals the FFN of that position alone."""
    other = x.clone()
    other[:, position] += 2.0
    keep = [t for t in range(x.shape[1]) if t != position]
    base = ffn(x)
    assert_close(ffn(other)[:, keep], base[:, keep].double(), f"positions other than {position}")
    for t in range(x.shape[1]):
        assert_close(ffn(x[:, t : t + 1])[:, 0], base[:, t].double(), f"position {t} on its own")


@pytest.mark.claim("ffn.position-wise")
@FIXTURE_OK
@given(length=st.integers(2, 6), d_model=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_position_wise(device: torch.device, length: int, d_model: int, seed: int) -> None:
    ffn = PositionWiseFFN(d_model, 4 * d_model).to(device, torch.float64)
    check_position_wise(ffn, inputs((2, length, d_model), seed, device), seed % length)


@pytest.mark.claim("ffn.position-wise")
def test_position_check_rejects_mixing_ffn() -> None:
    with pytest.raises(AssertionError):
        check_position_wise(mut.MixingFFN(4, 16).double(), inputs((2, 5, 4), 0), 2)
