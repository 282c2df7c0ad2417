"""T5 relative-position buckets: exact small distances, log spacing, the cap; a bias of j - i only."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.reference import mutants_variants as mut
from transformer_conformance.reference.relative_bias import RelativePositionBias, relative_bucket
from transformer_conformance.reference.tolerance import assert_close

CONFIGS = st.sampled_from([(32, 128), (8, 20), (16, 64), (6, 9)])


def check_bucket_properties(bucket_fn, num_buckets: int, max_distance: int, bidirectional: bool) -> None:
    """Exact below ``n // 2``, monotone in the distance, capped, sign split (bidirectional) or future -> 0."""
    n = num_buckets // 2 if bidirectional else num_buckets
    distance = torch.arange(0, 4 * max_distance)
    past = bucket_fn(
        -distance, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    )
    exact = n // 2
    assert past[:exact].tolist() == list(range(exact)), "small distances are not their own buckets"
    assert bool((past[1:] >= past[:-1]).all()), "bucket decreases with the distance"
    assert int(past.max()) == n - 1 and bool((past[max_distance:] == n - 1).all()), "cap at the last bucket"
    future = bucket_fn(
        distance[1:], bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    )
    if bidirectional:
        assert bool((future >= n).all()) and bool((future - n == past[1:]).all()), "future keys: upper half"
    else:
        assert bool((future == 0).all()), "causal buckets: future keys share bucket 0"


@pytest.mark.claim("relbias.buckets")
@given(config=CONFIGS, bidirectional=st.booleans())
def test_bucket_properties(config, bidirectional) -> None:
    check_bucket_properties(relative_bucket, *config, bidirectional)


@pytest.mark.claim("relbias.buckets")
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("config", [(32, 128), (8, 20), (16, 64)])
def test_buckets_match_hugging_face_t5(config, bidirectional) -> None:
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    relative = torch.arange(-300, 300)
    theirs = t5.T5Attention._relative_position_bucket(
        relative, bidirectional=bidirectional, num_buckets=config[0], max_distance=config[1]
    )
    ours = relative_bucket(
        relative, bidirectional=bidirectional, num_buckets=config[0], max_distance=config[1]
    )
    assert ours.tolist() == theirs.tolist()


@pytest.mark.claim("relbias.buckets")
def test_bucket_check_rejects_uncapped_buckets() -> None:
    with pytest.raises(AssertionError):
        check_bucket_properties(mut.relative_bucket_uncapped, 32, 128, True)


@pytest.mark.claim("relbias.buckets")
def test_log_spacing_rejects_linear_buckets() -> None:
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    relative = -torch.arange(0, 200)
    theirs = t5.T5Attention._relative_position_bucket(
        relative, bidirectional=False, num_buckets=32, max_distance=128
    )
    assert mut.relative_bucket_linear(relative, bidirectional=False).tolist() != theirs.tolist()


def check_bias_distance_only(module, nq: int, nk: int, shift: int) -> None:
    q_pos, k_pos = torch.arange(nk - nq, nk), torch.arange(nk)
    bias = module(q_pos, k_pos)
    assert_close(module(q_pos + shift, k_pos + shift), bias.double(), f"bias shifted by {shift}")
    buckets = relative_bucket(
        k_pos[None, :] - q_pos[:, None],
        bidirectional=module.bidirectional,
        num_buckets=module.num_buckets,
        max_distance=module.max_distance,
    )
    assert_close(bias, module.weight[buckets].permute(2, 0, 1).double(), "table[bucket(j - i), h]")


@pytest.mark.claim("relbias.distance-only")
@given(
    heads=st.integers(1, 4),
    nq=st.integers(1, 6),
    extra=st.integers(0, 6),
    shift=st.integers(1, 400),
    bidirectional=st.booleans(),
)
def test_relative_bias_depends_on_j_minus_i(heads, nq, extra, shift, bidirectional) -> None:
    module = RelativePositionBias(heads, bidirectional=bidirectional, num_buckets=8, max_distance=20).double()
    check_bias_distance_only(module, nq, nq + extra, shift)


@pytest.mark.claim("relbias.distance-only")
def test_distance_check_rejects_absolute_key_lookup() -> None:
    module = mut.AbsoluteKeyRelativeBias(2, bidirectional=False, num_buckets=8, max_distance=20).double()
    with pytest.raises(AssertionError):
        check_bias_distance_only(module, 3, 5, 4)
