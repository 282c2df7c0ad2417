"""Shared helpers of the variant tests: seeded float64 tensors and the hypothesis settings they use."""

import torch
from hypothesis import HealthCheck, settings
from torch import Tensor

FIXTURE_OK = settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ]
)


def rand(shape: tuple[int, ...], seed: int, scale: float = 1.0) -> Tensor:
    """Standard normal float64 tensor from ``seed`` (times ``scale``)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def ids(shape: tuple[int, ...], seed: int, vocab: int, low: int = 3) -> Tensor:
    """Token ids in ``[low, vocab)`` from ``seed``."""
    return torch.randint(low, vocab, shape, generator=torch.Generator().manual_seed(seed))
