"""LayerNorm: the formula (vs torch and vs a per-row loop), its statistics, and its independence from
other samples and positions; batch norm (train mode) as the contrast."""

import math
import statistics
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from tests.reference import mutants_pointwise as mut
from transformer_conformance.reference.layernorm import LayerNorm, batch_norm_train, layer_norm
from transformer_conformance.reference.tolerance import assert_close, direct

FIXTURE_OK = settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ]
)
Norm = Callable[..., Tensor]


def sample(
    shape: tuple[int, ...], seed: int, scale: float = 1.0, device: str | torch.device = "cpu"
) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    # A mean offset proportional to the spread keeps rows well conditioned in float32 as well.
    return ((torch.randn(shape, generator=gen, dtype=torch.float64) + 0.3) * scale).to(device)


# --------------------------------------------------------------------------- formula


def check_formula(norm: Norm, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> None:
    """Against ``torch.nn.functional.layer_norm`` in float64."""
    expected = F.layer_norm(x.double(), (x.shape[-1],), weight.double(), bias.double(), eps)
    assert_close(norm(x, weight, bias, eps), expected, "layer_norm vs torch")


def loop_oracle(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """The formula row by row with ``statistics`` (biased variance = pvariance)."""
    rows = x.double().reshape(-1, x.shape[-1]).tolist()
    w, b = weight.double().tolist(), bias.double().tolist()
    out = []
    for row in rows:
        mean, var = statistics.fmean(row), statistics.pvariance(row)
        out.append([(v - mean) / math.sqrt(var + eps) * wj + bj for v, wj, bj in zip(row, w, b)])
    return torch.tensor(out, dtype=torch.float64).reshape(x.shape)


@pytest.mark.claim("layernorm.formula")
@FIXTURE_OK
@given(
    shape=st.lists(st.integers(1, 4), min_size=0, max_size=2),
    d=st.integers(2, 16),
    scale=st.sampled_from([1e-3, 1e-2, 1.0, 30.0]),
    eps=st.sampled_from([1e-5, 1e-6, 1e-3]),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_formula_matches_torch_and_loop(
    device: torch.device, shape: list[int], d: int, scale: float, eps: float, seed: int, dtype: torch.dtype
) -> None:
    x = sample((*shape, d), seed, scale, device)
    weight, bias = sample((d,), seed + 1, device=device), sample((d,), seed + 2, device=device)
    check_formula(layer_norm, x, weight, bias, eps)
    assert_close(
        layer_norm(x, weight, bias, eps), loop_oracle(x.cpu(), weight.cpu(), bias.cpu(), eps), "loop"
    )
    module = LayerNorm(d, eps=eps).to(device, dtype)
    with torch.no_grad():
        module.weight.copy_(weight)
        module.bias.copy_(bias)
    got = module(x.to(dtype))
    assert got.dtype == dtype
    # The module in ``dtype`` against the float64 torch result on the same rounded input.
    xd = x.to(dtype).double()
    wd, bd = module.weight.detach().double(), module.bias.detach().double()
    assert_close(got, F.layer_norm(xd, (d,), wd, bd, eps), "LayerNorm module vs torch (float64)")


@pytest.mark.claim("layernorm.formula")
@pytest.mark.parametrize("mutant", [mut.layer_norm_unbiased, mut.layer_norm_eps_outside])
@pytest.mark.parametrize("scale", [1.0, 1e-2])
def test_formula_check_rejects_mutants(mutant: Norm, scale: float) -> None:
    x = sample((3, 8), 0, scale)
    with pytest.raises(AssertionError):
        check_formula(mutant, x, sample((8,), 1), sample((8,), 2), 1e-5)


def test_default_parameters_are_identity_affine() -> None:
    ln = LayerNorm(6)
    assert ln.eps == 1e-5 and torch.equal(ln.weight, torch.ones(6)) and torch.equal(ln.bias, torch.zeros(6))
    assert set(dict(ln.named_parameters())) == {"weight", "bias"}


# --------------------------------------------------------------------------- statistics


def check_standardised(norm: Norm, x: Tensor, eps: float) -> None:
    """Before the affine map: mean 0 and biased variance var / (var + eps) (1 up to eps)."""
    y = norm(x, None, None, eps).double()
    var_in = x.double().var(dim=-1, unbiased=False)
    assert_close(y.mean(dim=-1), torch.zeros_like(var_in), "mean of normalised rows")
    assert_close(y.var(dim=-1, unbiased=False), var_in / (var_in + eps), "biased variance of normalised rows")


@pytest.mark.claim("layernorm.zero-mean-unit-var")
@given(d=st.integers(2, 32), seed=st.integers(0, 2**16), eps=st.sampled_from([0.0, 1e-5]))
def test_zero_mean_unit_variance_before_affine(d: int, seed: int, eps: float) -> None:
    x = sample((4, d), seed, 3.0)
    check_standardised(layer_norm, x, eps)
    if eps == 0.0:
        y = layer_norm(x, None, None, 0.0)
        assert_close(
            y.var(dim=-1, unbiased=False), torch.ones(4, dtype=torch.float64), "variance without eps"
        )


@pytest.mark.claim("layernorm.zero-mean-unit-var")
def test_unit_variance_is_conditional() -> None:
    """Counterexamples to "always std 1": constant rows give 0, tiny-variance rows far less than 1,
    and an affine map moves both statistics."""
    assert torch.equal(
        layer_norm(torch.full((1, 8), 7.0, dtype=torch.float64)), torch.zeros(1, 8, dtype=torch.float64)
    )
    tiny = sample((1, 8), 3, 1e-3)  # variance ~1e-6 < eps
    assert float(layer_norm(tiny).var(unbiased=False)) < 0.2
    affine = layer_norm(
        sample((1, 8), 4),
        torch.full((8,), 2.0, dtype=torch.float64),
        torch.full((8,), 1.0, dtype=torch.float64),
    )
    assert not direct(affine.mean(dim=-1), torch.zeros(1, dtype=torch.float64)).ok


@pytest.mark.claim("layernorm.zero-mean-unit-var")
def test_standardised_check_rejects_unbiased_variance() -> None:
    with pytest.raises(AssertionError):
        check_standardised(mut.layer_norm_unbiased, sample((4, 8), 5), 1e-5)


# --------------------------------------------------------------------------- independence


def check_per_sample(norm: Callable[[Tensor], Tensor], x: Tensor) -> None:
    """Changing samples 1.. leaves sample 0's output unchanged."""
    other = x.clone()
    other[1:] = other[1:] * 5.0 - 2.0
    assert_close(norm(other)[0], norm(x)[0].double(), "sample 0 after editing the others")


def check_position_wise(norm: Callable[[Tensor], Tensor], x: Tensor, position: int) -> None:
    """Changing one position leaves every other position's output unchanged."""
    other = x.clone()
    other[:, position] = other[:, position] * 3.0 + 1.0
    keep = [t for t in range(x.shape[1]) if t != position]
    assert_close(norm(other)[:, keep], norm(x)[:, keep].double(), f"positions other than {position}")


@pytest.mark.claim("layernorm.per-sample", "layernorm.position-wise")
@FIXTURE_OK
@given(batch=st.integers(2, 4), length=st.integers(2, 5), d=st.integers(2, 8), seed=st.integers(0, 2**16))
def test_layer_norm_is_per_sample_and_position_wise(
    device: torch.device, batch: int, length: int, d: int, seed: int
) -> None:
    module = LayerNorm(d).to(device, torch.float64)
    with torch.no_grad():
        module.weight.copy_(sample((d,), seed + 1, device=device))
        module.bias.copy_(sample((d,), seed + 2, device=device))
    x = sample((batch, length, d), seed, device=device)
    check_per_sample(module, x)
    check_position_wise(module, x, seed % length)


@pytest.mark.claim("layernorm.per-sample")
def test_per_sample_check_rejects_batch_statistics() -> None:
    with pytest.raises(AssertionError):
        check_per_sample(lambda t: mut.layer_norm_across_batch(t), sample((3, 4, 6), 0))


@pytest.mark.claim("layernorm.position-wise")
def test_position_check_rejects_sequence_statistics() -> None:
    with pytest.raises(AssertionError):
        check_position_wise(lambda t: mut.layer_norm_over_positions(t), sample((2, 4, 6), 0), 1)


def check_cross_sample(norm: Callable[[Tensor], Tensor], x: Tensor) -> None:
    """Changing samples 1.. changes sample 0's output (statistics are shared across the batch)."""
    other = x.clone()
    other[1:] = other[1:] * 5.0 - 2.0
    assert not direct(norm(other)[0], norm(x)[0].double()).ok, "sample 0 did not react to the others"


@pytest.mark.claim("batchnorm.cross-sample")
def test_batch_norm_couples_samples(device: torch.device) -> None:
    x = sample((3, 4, 6), 7, device=device)
    check_cross_sample(batch_norm_train, x)
    # Its statistics match torch's BatchNorm1d in training mode (features as channels, no affine).
    bn = torch.nn.BatchNorm1d(6, affine=False, eps=1e-5).to(device, torch.float64).train()
    assert_close(batch_norm_train(x), bn(x.transpose(1, 2)).transpose(1, 2), "vs torch BatchNorm1d")


@pytest.mark.claim("batchnorm.cross-sample")
def test_cross_sample_check_rejects_per_sample_statistics() -> None:
    with pytest.raises(AssertionError):
        check_cross_sample(mut.batch_norm_per_sample, sample((3, 4, 6), 7))
