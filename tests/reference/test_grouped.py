"""Grouped-query and multi-query attention, sliding windows, the scale override and soft-capping."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from tests.reference import mutants_variants as mut
from tests.reference.variant_helpers import FIXTURE_OK, rand
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.grouped import grouped_attention, window_keep
from transformer_conformance.reference.masks import causal_mask
from transformer_conformance.reference.tolerance import assert_close

HEADS = st.sampled_from([(4, 2), (4, 1), (6, 3), (6, 2), (8, 4), (4, 4), (3, 1)])


def qkv(heads: int, kv: int, nq: int, nk: int, seed: int, d: int = 4):
    return rand((2, heads, nq, d), seed), rand((2, kv, nk, d), seed + 1), rand((2, kv, nk, d), seed + 2)


def check_gqa(attention_fn, heads: int, kv: int, mapping: str, seed: int) -> None:
    """Each query head equals plain attention over the KV head its mapping assigns."""
    q, k, v = qkv(heads, kv, 3, 5, seed)
    out, _ = attention_fn(q, k, v, mapping=mapping)
    group = heads // kv
    for h in range(heads):
        j = h // group if mapping == "contiguous" else h % kv
        expected, _ = scaled_dot_product_attention(q[:, h], k[:, j], v[:, j])
        assert_close(out[:, h], expected, f"query head {h} ({mapping}) reads KV head {j}")


@pytest.mark.claim("gqa.repeat-equivalence")
@given(heads=HEADS, mapping=st.sampled_from(["contiguous", "tiled"]), seed=st.integers(0, 2**16))
def test_gqa_is_mha_with_repeated_kv(heads, mapping, seed) -> None:
    check_gqa(grouped_attention, *heads, mapping, seed)


@pytest.mark.claim("gqa.repeat-equivalence")
@given(heads=HEADS, seed=st.integers(0, 2**16))
def test_contiguous_matches_torch_enable_gqa(heads, seed) -> None:
    q, k, v = qkv(*heads, 3, 5, seed)
    theirs = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    assert_close(theirs, grouped_attention(q, k, v, mapping="contiguous")[0], "torch SDPA enable_gqa")


@pytest.mark.claim("gqa.repeat-equivalence")
def test_gqa_check_rejects_tiled_heads_where_contiguous_is_declared() -> None:
    with pytest.raises(AssertionError):
        check_gqa(mut.gqa_tiled_attention, 4, 2, "contiguous", 0)


def check_mqa_and_mha(attention_fn, heads: int, seed: int) -> None:
    """One KV head: both mappings agree; as many KV heads as query heads: per-head attention (MHA)."""
    q, k, v = qkv(heads, 1, 3, 4, seed)
    contiguous, _ = attention_fn(q, k, v, mapping="contiguous")
    assert_close(attention_fn(q, k, v, mapping="tiled")[0], contiguous, "MQA: mappings agree")
    assert_close(
        contiguous,
        scaled_dot_product_attention(q, k.expand(2, heads, 4, 4), v.expand(2, heads, 4, 4))[0],
        "MQA",
    )
    q, k, v = qkv(heads, heads, 3, 4, seed)
    assert_close(
        attention_fn(q, k, v, mapping="contiguous")[0], scaled_dot_product_attention(q, k, v)[0], "MHA"
    )


@pytest.mark.claim("gqa.mqa-one-group")
@given(heads=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_mqa_is_the_one_group_case(heads, seed) -> None:
    check_mqa_and_mha(grouped_attention, heads, seed)


@pytest.mark.claim("gqa.mqa-one-group")
def test_mqa_check_rejects_every_head_reading_kv_head_zero() -> None:
    with pytest.raises(AssertionError):
        check_mqa_and_mha(mut.gqa_first_head_attention, 4, 0)


def check_window(keep_fn, length: int, window: int, i: int, seed: int) -> None:
    """Query i sees exactly ``i - w < j <= i``: keys outside never matter, each key inside does."""
    pos = torch.arange(length)
    keep = keep_fn(pos, pos, window)
    expected = [[i - window < j <= i for j in range(length)] for i in range(length)]
    assert keep.tolist() == expected, "keep-mask differs from i - w < j <= i"
    q, k, v = qkv(2, 2, length, length, seed)
    base, _ = grouped_attention(q, k, v, keep)
    for j in range(length):
        k2, v2 = k.clone(), v.clone()
        k2[:, :, j] += 3.0
        v2[:, :, j] += 3.0
        changed = not torch.allclose(
            grouped_attention(q, k2, v2, keep)[0][:, :, i], base[:, :, i], atol=0, rtol=0
        )
        assert changed == (i - window < j <= i), f"query {i}, key {j}, window {window}: changed={changed}"


@pytest.mark.claim("window.blind-outside")
@given(length=st.integers(2, 8), window=st.integers(1, 8), seed=st.integers(0, 2**16), data=st.data())
def test_window_hides_keys_outside(length, window, seed, data) -> None:
    check_window(window_keep, length, window, data.draw(st.integers(0, length - 1)), seed)


@pytest.mark.claim("window.blind-outside")
def test_window_check_rejects_off_by_one() -> None:
    with pytest.raises(AssertionError):
        check_window(mut.window_keep_off_by_one, 6, 2, 4, 0)


def check_wide_window(keep_fn, length: int, extra: int) -> None:
    pos = torch.arange(length)
    assert keep_fn(pos, pos, length + extra).tolist() == causal_mask(length, length).tolist()
    assert keep_fn(pos, pos, None).tolist() == causal_mask(length, length).tolist()


@pytest.mark.claim("window.full-when-wide")
@given(length=st.integers(1, 10), extra=st.integers(0, 5))
def test_wide_window_is_causal_attention(length, extra) -> None:
    check_wide_window(window_keep, length, extra)


@pytest.mark.claim("window.full-when-wide")
def test_wide_window_check_rejects_two_sided_band() -> None:
    with pytest.raises(AssertionError):
        check_wide_window(mut.window_keep_symmetric, 5, 0)


def check_scale(attention_fn, scale: float, seed: int) -> None:
    q, k, v = qkv(2, 2, 3, 4, seed)
    weights = torch.softmax(scale * q @ k.transpose(-2, -1), dim=-1)
    assert_close(attention_fn(q, k, v, scale=scale)[0], weights @ v, f"scale {scale}")


@pytest.mark.claim("scoring.scale-override")
@given(scale=st.sampled_from([1.0, 0.1, 2.0]), seed=st.integers(0, 2**16))
def test_scale_override(scale, seed) -> None:
    check_scale(grouped_attention, scale, seed)


@pytest.mark.claim("scoring.scale-override")
def test_scale_check_rejects_ignored_override() -> None:
    with pytest.raises(AssertionError):
        check_scale(mut.attention_ignores_scale, 1.0, 0)


def check_softcap(attention_fn, cap: float, seed: int) -> None:
    """Weights are the softmax of ``cap * tanh(s / cap)`` of the scaled scores, causal mask after it."""
    q, k, v = qkv(2, 2, 4, 4, seed)
    q = q * 4.0  # scores well beyond the cap
    s = q @ k.transpose(-2, -1) / math.sqrt(4)
    capped = cap * torch.tanh(s / cap)
    assert bool((capped.abs() <= cap).all())
    keep = causal_mask(4, 4)
    expected = torch.softmax(capped.masked_fill(~keep, float("-inf")), dim=-1)
    _, weights = attention_fn(q, k, v, keep, softcap=cap)
    assert_close(weights, expected, f"soft-capped weights, cap {cap}")


@pytest.mark.claim("scoring.softcap")
@given(cap=st.floats(0.5, 50.0), seed=st.integers(0, 2**16))
def test_softcap(cap, seed) -> None:
    check_softcap(grouped_attention, cap, seed)


@pytest.mark.claim("scoring.softcap")
def test_softcap_check_rejects_hard_clamp() -> None:
    with pytest.raises(AssertionError):
        check_softcap(mut.attention_clamp_cap, 1.0, 0)


@pytest.mark.claim("scoring.softcap")
@FIXTURE_OK
@given(seed=st.integers(0, 2**16))
def test_huge_cap_is_no_cap(seed) -> None:
    q, k, v = qkv(2, 2, 3, 3, seed)
    assert_close(grouped_attention(q, k, v, softcap=1e9)[0], grouped_attention(q, k, v)[0], "cap 1e9")
