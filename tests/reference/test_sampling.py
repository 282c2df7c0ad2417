"""Temperature sampling: limits (greedy, softmax, uniform), frequencies, invalid temperatures."""

import itertools
import math
from collections.abc import Callable
from statistics import NormalDist

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

from tests.reference import mutants_pointwise as mut
from transformer_conformance.reference.checking import ReferenceInputError
from transformer_conformance.reference.sampling import sample_next, sampling_distribution
from transformer_conformance.reference.tolerance import assert_close

Sampler = Callable[..., Tensor]
Distribution = Callable[[Tensor, float], Tensor]
FALSE_ALARM = 1e-6  # per frequency test; draws use fixed seeds, so any outcome is reproducible


def logits_with_gap(vocab: int, seed: int) -> Tensor:
    """Random logits whose maximum leads the runner-up by at least 1."""
    logits = torch.randn(2, vocab, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    top = logits.argmax(dim=-1, keepdim=True)
    return logits.scatter_add(-1, top, torch.ones_like(top, dtype=torch.float64))


def softmax_loop(row: list[float], temperature: float) -> list[float]:
    top = max(row)
    weights = [math.exp((v - top) / temperature) for v in row]
    total = math.fsum(weights)
    return [w / total for w in weights]


# --------------------------------------------------------------------------- limits


def check_limits(distribution: Distribution, logits: Tensor) -> None:
    vocab = logits.shape[-1]
    one_hot = torch.nn.functional.one_hot(logits.argmax(-1), vocab).double()
    uniform = torch.full_like(logits, 1.0 / vocab)
    assert_close(distribution(logits, 0.0), one_hot, "T = 0")
    assert_close(distribution(logits, 1e-2), one_hot, "T = 0.01 (gap >= 1: off-argmax mass < e^-100)")
    expected = torch.tensor([softmax_loop(row, 1.0) for row in logits.tolist()], dtype=torch.float64)
    assert_close(distribution(logits, 1.0), expected, "T = 1 vs softmax written out")
    assert_close(distribution(logits, 1e12), uniform, "T = 1e12")
    # In between, the distance to uniform shrinks monotonically as T grows.
    distances = [
        float((distribution(logits, t) - uniform).abs().sum()) for t in (0.1, 0.5, 1.0, 2.0, 10.0, 100.0)
    ]
    assert all(b < a for a, b in itertools.pairwise(distances)), distances


@pytest.mark.claim("sampling.temperature-limits")
@given(vocab=st.integers(2, 12), seed=st.integers(0, 2**16))
def test_temperature_limits(vocab: int, seed: int) -> None:
    check_limits(sampling_distribution, logits_with_gap(vocab, seed))


@pytest.mark.claim("sampling.temperature-limits")
def test_limits_check_rejects_inverse_temperature() -> None:
    with pytest.raises(AssertionError):
        check_limits(mut.distribution_multiplies, logits_with_gap(5, 0))


def check_greedy(sample: Sampler, logits: Tensor) -> None:
    try:
        got = sample(logits, temperature=0.0, generator=None)
    except Exception as err:
        raise AssertionError(f"T = 0 raised {type(err).__name__}: {err}") from err
    assert torch.equal(got.cpu(), logits.argmax(dim=-1).cpu()), f"T = 0 gave {got.tolist()}"


@pytest.mark.claim("sampling.temperature-limits", "sampling.invalid-temperature")
def test_zero_temperature_is_greedy(device: torch.device) -> None:
    logits = logits_with_gap(7, 3).to(device)
    check_greedy(sample_next, logits)
    check_greedy(
        lambda x, **kw: sample_next(x, temperature=0, generator=kw["generator"]), logits
    )  # int 0 too


@pytest.mark.claim("sampling.temperature-limits")
def test_greedy_check_rejects_division_by_zero() -> None:
    with pytest.raises(AssertionError):
        check_greedy(mut.sample_divides_by_zero, logits_with_gap(7, 3))


# --------------------------------------------------------------------------- frequencies


def chi_square_bound(df: int, false_alarm: float) -> float:
    """Upper ``1 - false_alarm`` quantile of chi-square(df), Wilson-Hilferty approximation."""
    z = NormalDist().inv_cdf(1.0 - false_alarm)
    c = 2.0 / (9.0 * df)
    return df * (1.0 - c + z * math.sqrt(c)) ** 3


def check_frequencies(sample: Sampler, logits: Tensor, temperature: float, draws: int, seed: int) -> None:
    """Pearson chi-square of the counts against softmax(logits / T) (written out), per row of ``logits``."""
    rows, vocab = logits.shape
    batch = logits.repeat(draws, 1)  # row r of logits at batch positions r, r + rows, ...
    gen = torch.Generator(device=logits.device).manual_seed(seed)
    ids = sample(batch, temperature=temperature, generator=gen).cpu().reshape(draws, rows)
    for r in range(rows):
        probs = softmax_loop(logits[r].tolist(), temperature)
        counts = torch.bincount(ids[:, r], minlength=vocab).tolist()
        stat = math.fsum((c - draws * p) ** 2 / (draws * p) for c, p in zip(counts, probs))
        bound = chi_square_bound(vocab - 1, FALSE_ALARM)
        assert stat <= bound, f"row {r}, T = {temperature}: chi-square {stat:.1f} > {bound:.1f} ({counts})"


FREQ_LOGITS = [[2.0, 1.0, 0.5, 0.0, -0.5, -1.0], [0.0, 0.3, -0.2, 1.5, 0.1, -0.7]]


@pytest.mark.claim("sampling.temperature-frequencies")
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_frequencies_match_softmax(device: torch.device, temperature: float) -> None:
    logits = torch.tensor(FREQ_LOGITS, device=device)
    check_frequencies(sample_next, logits, temperature, draws=10_000, seed=1234)


@pytest.mark.claim("sampling.temperature-frequencies")
@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_frequency_check_rejects_ignored_temperature(temperature: float) -> None:
    with pytest.raises(AssertionError):
        check_frequencies(
            mut.sample_ignores_temperature, torch.tensor(FREQ_LOGITS), temperature, 10_000, 1234
        )


def test_generator_makes_draws_reproducible() -> None:
    logits = torch.tensor(FREQ_LOGITS).repeat(50, 1)
    first = sample_next(logits, temperature=1.0, generator=torch.Generator().manual_seed(7))
    again = sample_next(logits, temperature=1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, again)


# --------------------------------------------------------------------------- invalid temperatures


def check_invalid_temperatures(sample: Sampler) -> None:
    logits = torch.tensor(FREQ_LOGITS)
    for bad in (-1.0, -1e-12, float("nan")):
        try:
            sample(logits, temperature=bad, generator=torch.Generator().manual_seed(0))
        except ReferenceInputError as err:
            assert "'temperature'" in str(err), str(err)
        else:
            raise AssertionError(f"temperature {bad} was accepted")


@pytest.mark.claim("sampling.invalid-temperature")
def test_invalid_temperatures_raise() -> None:
    check_invalid_temperatures(sample_next)
    check_invalid_temperatures(lambda x, temperature, generator: sampling_distribution(x, temperature))


@pytest.mark.claim("sampling.invalid-temperature")
def test_invalid_temperature_check_rejects_abs_temperature() -> None:
    with pytest.raises(AssertionError):
        check_invalid_temperatures(mut.sample_accepts_negative)
