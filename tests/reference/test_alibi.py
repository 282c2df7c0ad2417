"""ALiBi: slopes for any head count, a bias that depends on the distance only, order-awareness."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.reference import mutants_variants as mut
from tests.reference.variant_helpers import FIXTURE_OK, ids, rand
from transformer_conformance.reference.alibi import alibi_bias, alibi_slopes
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.grouped import grouped_attention
from transformer_conformance.reference.tolerance import assert_close, assert_differs
from transformer_conformance.reference.variant_lm import VariantLM


def paper_slopes(n: int) -> list[float]:
    """The ALiBi paper's recipe, written independently of the reference."""

    def power_of_two(m: int) -> list[float]:
        start = 2.0 ** (-8.0 / m)
        return [start ** (k + 1) for k in range(m)]

    if math.log2(n).is_integer():
        return power_of_two(n)
    p = 2 ** int(math.log2(n))
    return power_of_two(p) + power_of_two(2 * p)[0::2][: n - p]


def check_slopes(slopes_fn, n: int) -> None:
    slopes = slopes_fn(n)
    assert_close(slopes, torch.tensor(paper_slopes(n), dtype=torch.float64), f"slopes of {n} heads")
    assert bool(((slopes > 0) & (slopes < 1)).all()), "slopes outside (0, 1)"


@pytest.mark.claim("alibi.slopes")
@given(n=st.integers(1, 64))
def test_slopes_follow_the_paper(n) -> None:
    check_slopes(alibi_slopes, n)


@pytest.mark.claim("alibi.slopes")
def test_eight_heads_are_powers_of_one_half() -> None:
    assert alibi_slopes(8).tolist() == [2.0**-k for k in range(1, 9)]


@pytest.mark.claim("alibi.slopes")
@pytest.mark.parametrize("n", [3, 6, 12, 20])
def test_slopes_match_hugging_face_bloom(n) -> None:
    bloom = pytest.importorskip("transformers.models.bloom.modeling_bloom")
    mask = torch.ones(1, 2)
    hf = bloom.build_alibi_tensor(mask, n, torch.float32)[:, 0, 1]  # slope * key position 1, float32
    assert_close(hf, alibi_slopes(n), f"transformers' BLOOM slopes of {n} heads (float32) vs the reference")


@pytest.mark.claim("alibi.slopes")
@pytest.mark.parametrize("n", [3, 6, 12])
def test_slope_check_rejects_power_of_two_recipe_for_other_counts(n) -> None:
    with pytest.raises(AssertionError):
        check_slopes(mut.alibi_slopes_geometric_always, n)


def check_distance_only(bias_fn, heads: int, nq: int, nk: int, shift: int) -> None:
    q_pos, k_pos = torch.arange(nk - nq, nk), torch.arange(nk)
    bias = bias_fn(alibi_slopes(heads), q_pos, k_pos)
    assert_close(bias_fn(alibi_slopes(heads), q_pos + shift, k_pos + shift), bias, f"bias shifted by {shift}")
    distance = (q_pos[:, None] - k_pos[None, :]).double()
    assert_close(bias, -alibi_slopes(heads)[:, None, None] * distance, "-slope * (i - j)")


@pytest.mark.claim("alibi.distance-only")
@given(heads=st.integers(1, 12), nq=st.integers(1, 5), extra=st.integers(0, 5), shift=st.integers(1, 1000))
def test_bias_depends_on_distance_only(heads, nq, extra, shift) -> None:
    check_distance_only(alibi_bias, heads, nq, nq + extra, shift)


@pytest.mark.claim("alibi.distance-only")
def test_distance_check_rejects_sum_of_positions() -> None:
    with pytest.raises(AssertionError):
        check_distance_only(mut.alibi_bias_sum, 4, 3, 5, 2)


@pytest.mark.claim("alibi.distance-only", "relbias.distance-only")
@FIXTURE_OK
@given(kind=st.sampled_from(["alibi", "relative"]), start=st.integers(1, 200), seed=st.integers(0, 2**16))
def test_model_logits_do_not_depend_on_where_positions_start(kind, start, seed) -> None:
    torch.manual_seed(seed)
    model = VariantLM(
        TransformerConfig.tiny(
            arch=Architecture(positions=kind, relative_buckets=8, relative_max_distance=16)
        )
    ).double()
    tokens = ids((2, 6), seed, 23)
    cache = model.new_cache(2)
    cache.position = start  # an empty cache whose next slot is `start`
    assert_close(model.step(tokens, cache), model(tokens).double(), f"{kind} logits at slots {start}..")


def check_order_aware(bias_fn, heads: int, length: int, seed: int) -> None:
    """Equivariant without a bias; with the ALiBi bias permuting the tokens changes more than the order."""
    x = rand((1, heads, length, 4), seed)
    perm = torch.roll(torch.arange(length), 1)
    pos = torch.arange(length)
    bias = bias_fn(alibi_slopes(heads), pos, pos)[None]

    def attend(inp, b):
        return grouped_attention(inp, inp, inp, None, b)[0]

    assert_close(attend(x[:, :, perm], None), attend(x, None)[:, :, perm].double(), "no bias: equivariant")
    assert_differs(attend(x[:, :, perm], bias), attend(x, bias)[:, :, perm], "ALiBi: order-aware")


@pytest.mark.claim("alibi.breaks-permutation-equivariance")
@given(heads=st.integers(1, 6), length=st.integers(3, 7), seed=st.integers(0, 2**16))
def test_alibi_breaks_permutation_equivariance(heads, length, seed) -> None:
    check_order_aware(alibi_bias, heads, length, seed)


@pytest.mark.claim("alibi.breaks-permutation-equivariance")
def test_order_check_rejects_missing_bias() -> None:
    with pytest.raises(AssertionError):
        check_order_aware(mut.alibi_bias_zero, 4, 5, 0)
