"""Residual sublayer: post-LN LayerNorm(x + f(x)), pre-LN x + f(LayerNorm(x)); the update is added."""

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from tests.reference import mutants_pointwise as mut
from transformer_conformance.reference.checking import ReferenceInputError
from transformer_conformance.reference.ffn import PositionWiseFFN
from transformer_conformance.reference.layernorm import LayerNorm
from transformer_conformance.reference.sublayer import residual_sublayer
from transformer_conformance.reference.tolerance import assert_close

FIXTURE_OK = settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ]
)
Residual = Callable[..., Tensor]


def setup(d: int, seed: int, device: str | torch.device = "cpu") -> tuple[Tensor, PositionWiseFFN, LayerNorm]:
    torch.manual_seed(seed)
    ffn = PositionWiseFFN(d, 2 * d).to(device, torch.float64)
    norm = LayerNorm(d).to(device, torch.float64)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(device)
    return x, ffn, norm


def torch_norm(norm: LayerNorm, h: Tensor) -> Tensor:
    return F.layer_norm(h, (norm.d,), norm.weight.detach(), norm.bias.detach(), norm.eps)


def check_placements(residual: Residual, x: Tensor, ffn: PositionWiseFFN, norm: LayerNorm) -> None:
    """post: LayerNorm(x + f(x)); pre: x + f(LayerNorm(x)), with torch's layer_norm as the norm."""
    with torch.no_grad():
        post = residual(x, ffn, norm, placement="post")
        pre = residual(x, ffn, norm, placement="pre")
        assert_close(post, torch_norm(norm, x + ffn(x)), "post-LN")
        assert_close(pre, x + ffn(torch_norm(norm, x)), "pre-LN")


@pytest.mark.claim("residual.post-ln")
@FIXTURE_OK
@given(d=st.integers(2, 8), seed=st.integers(0, 2**16))
def test_placements(device: torch.device, d: int, seed: int) -> None:
    check_placements(residual_sublayer, *setup(d, seed, device))


@pytest.mark.claim("residual.post-ln")
def test_default_placement_is_post() -> None:
    x, ffn, norm = setup(4, 0)
    with torch.no_grad():
        assert torch.equal(residual_sublayer(x, ffn, norm), residual_sublayer(x, ffn, norm, placement="post"))


@pytest.mark.claim("residual.post-ln")
@pytest.mark.parametrize("mutant", [mut.residual_swapped_placement, mut.residual_substitutes])
def test_placement_check_rejects_mutants(mutant: Residual) -> None:
    with pytest.raises(AssertionError):
        check_placements(mutant, *setup(4, 0))


def check_adds_update(residual: Residual, x: Tensor, norm: LayerNorm) -> None:
    """A zero update leaves pre-LN output equal to x (post-LN: LayerNorm(x)); an update u shows up as x + u;
    with attention as the sublayer, output - x is exactly the weighted values."""
    from transformer_conformance.reference.attention import scaled_dot_product_attention

    def attend(h: Tensor) -> Tensor:
        out, _ = scaled_dot_product_attention(h, h, h)
        return out

    zero = torch.zeros_like
    with torch.no_grad():
        assert_close(residual(x, zero, norm, placement="pre"), x, "pre-LN with a zero update")
        assert_close(
            residual(x, zero, norm, placement="post"), torch_norm(norm, x), "post-LN with a zero update"
        )
        update = torch.full_like(x, 0.25)
        assert_close(
            residual(x, lambda h: update, norm, placement="pre"), x + update, "pre-LN with a constant update"
        )
        got = residual(x, attend, norm, placement="pre")
        assert_close(got - x, attend(torch_norm(norm, x)), "attention's weighted values added to x")


@pytest.mark.claim("residual.adds-update")
def test_adds_update(device: torch.device) -> None:
    x, _, norm = setup(4, 3, device)
    check_adds_update(residual_sublayer, x, norm)


@pytest.mark.claim("residual.adds-update")
def test_adds_update_check_rejects_substitution() -> None:
    x, _, norm = setup(4, 3)
    with pytest.raises(AssertionError):
        check_adds_update(mut.residual_substitutes, x, norm)


def test_sublayer_changing_shape_is_an_error() -> None:
    x, _, norm = setup(4, 0)
    with pytest.raises(ReferenceInputError, match="'sublayer'"):
        residual_sublayer(x, lambda h: h[..., :2], norm)
    with pytest.raises((ReferenceInputError, TypeError), match="placement"):  # beartype or require
        residual_sublayer(x, lambda h: h, norm, placement="middle")  # type: ignore[arg-type]
