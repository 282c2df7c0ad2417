"""The grouped-query MHA layer (reference/grouped_mha.py): GQA/MQA projections, equivalence with MHA whose
K/V rows are repeated, head-by-head computation, and the head relabelling the conformance check uses."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.reference.variant_helpers import rand
from transformer_conformance.reference.grouped_mha import (
    GroupedMultiHeadAttention,
    expanded_state,
    kv_head_of,
    mha_reference,
    relabel_order,
    relabel_state,
)
from transformer_conformance.reference.masks import causal_mask, combine_masks, key_padding_to_attention_mask
from transformer_conformance.reference.multihead import MultiHeadAttention
from transformer_conformance.reference.tolerance import assert_close

HEADS = st.sampled_from([(4, 2), (4, 1), (6, 3), (6, 2), (4, 4), (3, 1), (2, 2)])
MAPPING = st.sampled_from(["contiguous", "tiled"])


def layer(heads: int, kv: int, mapping: str, seed: int, d_head: int = 3) -> GroupedMultiHeadAttention:
    torch.manual_seed(seed)
    return GroupedMultiHeadAttention(heads * d_head, heads, kv, mapping=mapping).double().eval()  # type: ignore[arg-type]


def inputs(module: GroupedMultiHeadAttention, seed: int, nq: int = 3, nk: int = 5):
    x_q, x_kv = rand((2, nq, module.d_model), seed), rand((2, nk, module.d_model), seed + 1)
    real = torch.ones(2, nk, dtype=torch.bool)
    real[1, nk // 2 :] = False
    return x_q, x_kv, combine_masks(key_padding_to_attention_mask(real), causal_mask(nq, nk))


@pytest.mark.claim("mha.gqa-projections")
@given(heads=HEADS, mapping=MAPPING)
def test_projection_shapes(heads, mapping) -> None:
    h, kv = heads
    module = layer(h, kv, mapping, 0)
    d = module.d_model
    assert module.w_q.weight.shape == (d, d) and module.w_o.weight.shape == (d, d)
    assert module.w_k.weight.shape == (kv * module.d_head, d) == module.w_v.weight.shape
    assert module.w_k.bias.shape == (kv * module.d_head,)


@pytest.mark.claim("mha.gqa-projections", "gqa.repeat-equivalence")
@given(heads=HEADS, mapping=MAPPING, seed=st.integers(0, 2**16))
def test_grouped_equals_mha_with_repeated_kv_rows(heads, mapping, seed) -> None:
    h, kv = heads
    module = layer(h, kv, mapping, seed)
    x_q, x_kv, mask = inputs(module, seed)
    full = MultiHeadAttention(module.d_model, h).double().eval()
    full.load_state_dict(expanded_state(module.state_dict(), h, kv, mapping))  # type: ignore[arg-type]
    for m in (None, mask):
        out, w = module(x_q, x_kv, m)
        expected, w_expected = full(x_q, x_kv, m)
        assert_close(out, expected, f"grouped vs expanded MHA ({h} heads, {kv} KV, {mapping})")
        assert_close(w, w_expected, "weights")


@pytest.mark.claim("mha.gqa-projections", "mha.fused-equals-per-head")
@given(heads=HEADS, mapping=MAPPING, seed=st.integers(0, 2**16))
def test_fused_equals_head_by_head(heads, mapping, seed) -> None:
    module = layer(*heads, mapping, seed)
    x_q, x_kv, mask = inputs(module, seed)
    out, w = module(x_q, x_kv, mask)
    per_out, per_w = module.forward_per_head(x_q, x_kv, mask)
    assert_close(out, per_out, "fused vs per head")
    assert_close(w, per_w, "weights fused vs per head")
    terms = module.head_contributions(x_q, x_kv, mask)
    assert_close(terms.sum(dim=1) + module.w_o.bias, out, "sum of head contributions")


@pytest.mark.claim("gqa.mqa-one-group", "mha.gqa-projections")
@given(heads=st.sampled_from([1, 2, 3, 4]), seed=st.integers(0, 2**16))
def test_all_kv_heads_is_mha_and_one_kv_head_ignores_the_mapping(heads, seed) -> None:
    module = layer(heads, heads, "contiguous", seed)
    x_q, x_kv, mask = inputs(module, seed)
    plain = MultiHeadAttention(module.d_model, heads).double().eval()
    plain.load_state_dict(module.state_dict())
    assert_close(module(x_q, x_kv, mask)[0], plain(x_q, x_kv, mask)[0], "kv = heads is MHA")
    mqa = layer(heads, 1, "contiguous", seed)
    tiled = layer(heads, 1, "tiled", seed)
    tiled.load_state_dict(mqa.state_dict())
    assert_close(mqa(x_q, x_kv, mask)[0], tiled(x_q, x_kv, mask)[0], "MQA: mappings agree")
    assert isinstance(mha_reference(6, 2), MultiHeadAttention)
    assert isinstance(mha_reference(6, 2, 1), GroupedMultiHeadAttention)


@pytest.mark.claim("mha.gqa-group-relabel")
@given(heads=HEADS, mapping=MAPPING, seed=st.integers(0, 2**16))
def test_relabelling_within_groups_changes_nothing(heads, mapping, seed) -> None:
    h, kv = heads
    g = h // kv
    module = layer(h, kv, mapping, seed)
    x_q, x_kv, mask = inputs(module, seed)
    gen = torch.Generator().manual_seed(seed)
    within = [torch.randperm(g, generator=gen).tolist() for _ in range(kv)]
    kv_order = torch.randperm(kv, generator=gen).tolist()
    order = relabel_order(h, kv, within, kv_order, mapping)  # type: ignore[arg-type]
    assert sorted(order) == list(range(h))
    for new, old in enumerate(order):  # each new head reads the new KV slot of its old KV head
        assert kv_order[kv_head_of(new, h, kv, mapping)] == kv_head_of(old, h, kv, mapping)  # type: ignore[arg-type]
    moved = layer(h, kv, mapping, seed)
    moved.load_state_dict(relabel_state(module.state_dict(), h, kv, order, kv_order))
    out, w = module(x_q, x_kv, mask)
    out2, w2 = moved(x_q, x_kv, mask)
    assert_close(out2, out, "output after relabelling")
    assert_close(w2, w[:, order], "weights permuted by the head order")


@pytest.mark.claim("mha.gqa-group-relabel")
def test_relabelling_changes_the_output_under_the_other_mapping() -> None:
    h, kv = 4, 2
    module = layer(h, kv, "tiled", 0)  # computes tiled; relabelled as if contiguous
    x_q, x_kv, mask = inputs(module, 0)
    order = relabel_order(h, kv, [[1, 0], [1, 0]], [0, 1], "contiguous")
    moved = layer(h, kv, "tiled", 0)
    moved.load_state_dict(relabel_state(module.state_dict(), h, kv, order, [0, 1]))
    with pytest.raises(AssertionError):
        assert_close(moved(x_q, x_kv, mask)[0], module(x_q, x_kv, mask)[0], "wrong grouping")
