"""Shared test setup: hypothesis profiles, the device parametrisation, and the claim marker.

Profiles: ``quick`` (local edits), ``ci`` (derandomized, picked automatically when ``CI`` is set),
``thorough`` (many examples). Choose with ``HYPOTHESIS_PROFILE=...``.

Tests that realise a spec claim carry ``@pytest.mark.claim("claim.id", ...)``; the meta-tests in
``tests/spec`` read those markers (statically) and fail on unknown IDs or untested claims.
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]

settings.register_profile("quick", max_examples=10, deadline=None, suppress_health_check=_SUPPRESS)
settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=_SUPPRESS,
)
settings.register_profile("thorough", max_examples=500, deadline=None, suppress_health_check=_SUPPRESS)
# Tests use tiny tensors and run on several xdist workers: one intra-op thread per worker avoids
# oversubscribing the cores (with 2 threads each on a loaded 2-core machine, tiny ops slow down ~1000x).
torch.set_num_threads(1)

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "quick"))
# Under CI every audit a test runs without a seed is derandomized too (the quick and thorough
# profiles otherwise draw a fresh run seed): a CI verdict never depends on a draw.
if os.environ.get("CI"):
    os.environ.setdefault("TRANSFORMER_CONFORMANCE_SEED", "20240601")

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
    ),
]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Run the test on every available device: CPU always, CUDA where present."""
    return torch.device(request.param)


CHECKS_ENABLED = os.environ.get("JAXTYPING_DISABLE", "0").lower() in ("", "0", "false")
requires_shape_checks = pytest.mark.skipif(
    not CHECKS_ENABLED, reason="JAXTYPING_DISABLE is set: run-time shape checks are off"
)
