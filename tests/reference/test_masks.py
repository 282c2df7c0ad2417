"""Masks: causal (boolean and additive), alignment, padding, combination.

Each contract is a ``check_*`` function; the reference must pass it and a planted-bug mutant from
``mutants_attention`` must fail the very same function.
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reference import mutants_attention as mut
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.masks import (
    additive_mask,
    causal_mask,
    combine_masks,
    key_padding_to_attention_mask,
    padding_mask_from_ids,
    padding_mask_from_lengths,
)
from transformer_conformance.reference.tolerance import assert_close, assert_differs

sizes = st.integers(min_value=1, max_value=7)
# The ``device`` fixture is an immutable parameter, safe to share across hypothesis examples.
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def check_causal_lower_triangular(causal, n: int, device: torch.device) -> None:
    """Square causal keep-mask: entry (i, j) is True exactly when j <= i (diagonal included)."""
    keep = causal(n, n, device=device)
    for i in range(n):
        for j in range(n):
            assert bool(keep[i, j]) == (j <= i), f"entry ({i}, {j}) of the causal keep-mask for n={n}"


def check_alignment(causal, num_q: int, num_k: int, device: torch.device) -> None:
    """Bottom-right: query i sits at position num_k - num_q + i; top-left: at position i."""
    for alignment, offset in (("bottom-right", num_k - num_q), ("top-left", 0)):
        keep = causal(num_q, num_k, alignment=alignment, device=device)
        assert tuple(keep.shape) == (num_q, num_k)
        for i in range(num_q):
            visible = [j for j in range(num_k) if bool(keep[i, j])]
            assert visible == list(range(max(0, min(num_k, i + offset + 1)))), (alignment, i, visible)


@pytest.mark.claim(
    "mask.causal.boolean-lower-triangular",
    "mask.causal.diagonal-visible",
    "mask.causal.called-upper-triangular",
)
@fixture_ok
@given(n=sizes)
def test_causal_mask_is_lower_triangular_with_diagonal(n, device):
    check_causal_lower_triangular(causal_mask, n, device)
    keep = causal_mask(n, n, device=device)
    assert bool(keep.diagonal().all()), "every position must see itself"
    # N4's entries (1 on and below the diagonal) make a lower triangular matrix, so "upper triangular"
    # is wrong as stated; only the complement (the hide-mask) is upper triangular, strictly.
    ones = torch.ones(n, n, dtype=torch.bool, device=device)
    assert torch.equal(keep, ones.tril())
    if n > 1:
        assert not torch.equal(keep, keep.triu()), "the described matrix has entries below the diagonal"
        assert not torch.equal(keep, ones.triu()), "an upper triangular keep-mask would see the future"
    assert torch.equal(~keep, ones.triu(diagonal=1))


@pytest.mark.claim(
    "mask.causal.boolean-lower-triangular",
    "mask.causal.diagonal-visible",
    "mask.causal.called-upper-triangular",
)
@pytest.mark.parametrize("mutant", [mut.causal_mask_strict, mut.causal_mask_upper])
def test_causal_mask_check_rejects_mutants(mutant, device):
    with pytest.raises(AssertionError):
        check_causal_lower_triangular(mutant, 4, device)


@pytest.mark.claim("mask.causal.additive-form")
def test_additive_causal_mask_is_zero_on_and_below_diagonal_and_minus_inf_above(device):
    bias = additive_mask(causal_mask(4, 4, device=device), dtype=torch.float64)
    inf = float("-inf")
    expected = torch.tensor(
        [[0, inf, inf, inf], [0, 0, inf, inf], [0, 0, 0, inf], [0, 0, 0, 0]],
        dtype=torch.float64,
        device=device,
    )
    assert torch.equal(bias, expected)
    assert additive_mask(causal_mask(2, 2), dtype=torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.claim("mask.causal.alignment")
@fixture_ok
@given(num_q=sizes, num_k=sizes)
def test_causal_alignment_both_ways(num_q, num_k, device):
    check_alignment(causal_mask, num_q, num_k, device)


@pytest.mark.claim("mask.causal.alignment")
def test_causal_alignment_hand_worked_example():
    # Two new queries over four keys (two cached): the queries are positions 2 and 3.
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]
    assert causal_mask(2, 4, alignment="top-left").tolist() == [
        [True, False, False, False],
        [True, True, False, False],
    ]
    # More queries than keys, bottom-right: the first queries see nothing (fully masked rows).
    assert causal_mask(3, 1).tolist() == [[False], [False], [True]]


@pytest.mark.claim("mask.causal.alignment")
def test_causal_alignment_check_rejects_mutant(device):
    with pytest.raises(AssertionError):
        check_alignment(mut.causal_mask_always_top_left, 2, 4, device)


@pytest.mark.claim("mask.causal.batch-shared")
def test_one_causal_mask_serves_every_sample(device):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 5, 4, generator=g, dtype=torch.float64).to(device) for _ in range(3))
    shared = causal_mask(5, 5, device=device)
    per_sample = shared.expand(3, 5, 5).clone()  # the notes' [batch, L, L] form
    out_shared, w_shared = scaled_dot_product_attention(q, k, v, shared)
    out_batch, w_batch = scaled_dot_product_attention(q, k, v, per_sample)
    assert torch.equal(out_shared, out_batch) and torch.equal(w_shared, w_batch)
    assert all(torch.equal(per_sample[b], per_sample[0]) for b in range(3)), "identical for every sample"


def check_inference_noop(causal, num_cached: int, device: torch.device) -> None:
    """For one newest query on a cache, the causal mask changes nothing (it hides no key)."""
    g = torch.Generator().manual_seed(num_cached)
    q = torch.randn(2, 1, 4, generator=g, dtype=torch.float64).to(device)
    k, v = (torch.randn(2, num_cached + 1, 4, generator=g, dtype=torch.float64).to(device) for _ in range(2))
    masked, _ = scaled_dot_product_attention(q, k, v, causal(1, num_cached + 1, device=device))
    unmasked, _ = scaled_dot_product_attention(q, k, v)
    assert torch.equal(masked, unmasked)


@pytest.mark.claim("mask.causal.inference-noop")
def test_causal_mask_is_noop_for_one_newest_query_but_not_for_prefill(device):
    for cached in (1, 3, 6):
        check_inference_noop(causal_mask, cached, device)
    # Counter-case: prefill of a prompt (several queries at once) needs the mask.
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 4, 4, generator=g, dtype=torch.float64).to(device) for _ in range(3))
    masked, _ = scaled_dot_product_attention(q, k, v, causal_mask(4, 4, device=device))
    unmasked, _ = scaled_dot_product_attention(q, k, v)
    assert_differs(masked[:, :-1], unmasked[:, :-1], "prefill outputs with vs without the mask")
    assert_close(masked[:, -1], unmasked[:, -1], "last position")  # it sees every key either way


@pytest.mark.claim("mask.causal.inference-noop")
def test_inference_noop_check_rejects_top_left_mutant(device):
    # A top-left mask hides the cache from the newest query: the "no-op" property fails.
    with pytest.raises(AssertionError):
        check_inference_noop(mut.causal_mask_always_top_left, 3, device)


def check_padding_from_lengths(padding, device: torch.device) -> None:
    lengths = torch.tensor([0, 2, 4], device=device)
    right = padding(lengths, 4, side="right")
    left = padding(lengths, 4, side="left")
    assert right.tolist() == [[False] * 4, [True, True, False, False], [True] * 4]
    assert left.tolist() == [[False] * 4, [False, False, True, True], [True] * 4]


@pytest.mark.claim("mask.padding.invariance")
def test_padding_mask_from_lengths_right_and_left(device):
    check_padding_from_lengths(padding_mask_from_lengths, device)


@pytest.mark.claim("mask.padding.invariance")
def test_padding_from_lengths_check_rejects_mutant(device):
    with pytest.raises(AssertionError):
        check_padding_from_lengths(mut.padding_left_as_right, device)


@pytest.mark.claim("mask.padding.pad-value-arbitrary")
@pytest.mark.parametrize("pad_id", [0, 3, 99])
def test_padding_mask_from_ids_for_any_pad_id(pad_id, device):
    ids = torch.tensor([[5, 7, pad_id], [pad_id, 1, pad_id]], device=device)
    assert padding_mask_from_ids(ids, pad_id).tolist() == [[True, True, False], [False, True, False]]


@pytest.mark.claim("mask.padding.invariance")
def test_key_padding_and_combination(device):
    key_pad = torch.tensor([[True, True, False], [True, False, False]], device=device)
    as_mask = key_padding_to_attention_mask(key_pad)
    assert tuple(as_mask.shape) == (2, 1, 1, 3)
    combined = combine_masks(None, causal_mask(3, 3, device=device), as_mask)
    assert combined is not None and tuple(combined.shape) == (2, 1, 3, 3)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                assert bool(combined[b, 0, i, j]) == (j <= i and bool(key_pad[b, j]))
    assert combine_masks(None, None) is None
    assert combine_masks(as_mask) is not None
