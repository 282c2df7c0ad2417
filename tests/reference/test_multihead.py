"""Multi-head attention: head split/merge, fused vs per-head, output matrix, parameters, caches.

Same pattern as ``test_attention``: each contract is a ``check_*`` function that the reference passes
and a planted-bug mutant from ``mutants_attention`` fails.
"""

import dataclasses
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reference import mutants_attention as mut
from transformer_conformance.reference import tolerance
from transformer_conformance.reference.attention import scaled_dot_product_attention as sdpa_function
from transformer_conformance.reference.cache import KVCache, LayerKVCache
from transformer_conformance.reference.masks import causal_mask, key_padding_to_attention_mask
from transformer_conformance.reference.multihead import MultiHeadAttention, merge_heads, split_heads

fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
F64 = torch.float64


def make_mha(cls, d_model: int, num_heads: int, device, seed: int = 0):
    torch.manual_seed(seed)
    return cls(d_model, num_heads).to(device=device, dtype=F64)


def randn(g: torch.Generator, *shape: int, device) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=F64).to(device)


def random_mask(kind: str, g: torch.Generator, b: int, h: int, nq: int, nk: int, device):
    if kind == "causal":
        return causal_mask(nq, nk, device=device)
    if kind == "key-padding":
        pad = torch.rand(b, nk, generator=g) < 0.7
        pad[:, 0] = True
        return key_padding_to_attention_mask(pad.to(device))
    if kind == "per-head":
        return (torch.rand(b, h, nq, nk, generator=g) < 0.6).to(device)
    return None


@st.composite
def mha_problems(draw):
    return {
        "num_heads": draw(st.sampled_from([1, 2, 4])),
        "d_head": draw(st.integers(1, 3)),
        "batch": draw(st.integers(1, 2)),
        "num_q": draw(st.integers(1, 4)),
        "num_k": draw(st.integers(1, 4)),
        "mask": draw(st.sampled_from(["none", "causal", "key-padding", "per-head"])),
        "seed": draw(st.integers(0, 2**16)),
    }


def build(p, device, cls=MultiHeadAttention):
    d_model = p["num_heads"] * p["d_head"]
    mha = make_mha(cls, d_model, p["num_heads"], device, p["seed"])
    g = torch.Generator().manual_seed(p["seed"])
    x_q = randn(g, p["batch"], p["num_q"], d_model, device=device)
    x_kv = randn(g, p["batch"], p["num_k"], d_model, device=device)
    mask = random_mask(p["mask"], g, p["batch"], p["num_heads"], p["num_q"], p["num_k"], device)
    return mha, x_q, x_kv, mask


# --- split / merge --------------------------------------------------------------------------------------


def check_split_merge(split, merge, x, num_heads: int) -> None:
    heads = split(x, num_heads)
    d = x.shape[-1] // num_heads
    assert tuple(heads.shape) == (x.shape[0], num_heads, x.shape[1], d)
    assert heads.shape[1] * heads.shape[-1] == x.shape[-1], "h * d_head = d_model"
    assert torch.equal(merge(heads), x), "merge(split(x)) == x"
    for j in range(num_heads):
        assert torch.equal(heads[:, j], x[..., j * d : (j + 1) * d]), (
            f"head {j} takes columns {j * d}:{(j + 1) * d}"
        )


@pytest.mark.claim("mha.split-merge-roundtrip", "mha.concat-width")
@fixture_ok
@given(h=st.integers(1, 4), d=st.integers(1, 4), length=st.integers(1, 4), seed=st.integers(0, 99))
def test_split_merge_roundtrip_and_column_slices(h, d, length, seed, device):
    x = randn(torch.Generator().manual_seed(seed), 2, length, h * d, device=device)
    check_split_merge(split_heads, merge_heads, x, h)


@pytest.mark.claim("mha.split-merge-roundtrip")
def test_split_merge_check_rejects_bare_reshape(device):
    x = randn(torch.Generator().manual_seed(0), 2, 3, 8, device=device)
    with pytest.raises(AssertionError):
        check_split_merge(mut.split_heads_no_transpose, mut.merge_heads_no_transpose, x, 2)


# --- fused vs per-head, output matrix, formula ------------------------------------------------------------


def check_fused_equals_per_head(mha, x_q, x_kv, mask) -> None:
    out, w = mha(x_q, x_kv, mask)
    out_h, w_h = mha.forward_per_head(x_q, x_kv, mask)
    tolerance.assert_close(out, out_h, "fused vs per-head output")
    tolerance.assert_close(w, w_h, "fused vs per-head weights")


@pytest.mark.claim("mha.fused-equals-per-head")
@fixture_ok
@given(problem=mha_problems())
def test_fused_projection_equals_per_head_projections(problem, device):
    with torch.no_grad():
        check_fused_equals_per_head(*build(problem, device))


@pytest.mark.claim("mha.fused-equals-per-head")
def test_fused_check_rejects_bare_reshape_split(device):
    p = {"num_heads": 2, "d_head": 3, "batch": 2, "num_q": 3, "num_k": 4, "mask": "causal", "seed": 1}
    with torch.no_grad(), pytest.raises(AssertionError):
        check_fused_equals_per_head(*build(p, device, mut.NoTransposeSplitMHA))


def check_sum_of_heads(mha, x_q, x_kv, mask) -> None:
    out, _ = mha(x_q, x_kv, mask)
    terms = mha.head_contributions(x_q, x_kv, mask)
    assert tuple(terms.shape) == (x_q.shape[0], mha.num_heads, x_q.shape[1], mha.d_model)
    tolerance.assert_close(terms.sum(dim=1) + mha.w_o.bias, out, "sum of head terms + bias")


@pytest.mark.claim("mha.output-sum-of-heads")
@fixture_ok
@given(problem=mha_problems())
def test_concat_times_w_o_equals_sum_of_head_contributions(problem, device):
    with torch.no_grad():
        check_sum_of_heads(*build(problem, device))


@pytest.mark.claim("mha.output-sum-of-heads")
def test_sum_of_heads_check_rejects_row_slices(device):
    p = {"num_heads": 2, "d_head": 2, "batch": 1, "num_q": 3, "num_k": 3, "mask": "none", "seed": 2}
    with torch.no_grad(), pytest.raises(AssertionError):
        check_sum_of_heads(*build(p, device, mut.RowSliceContributionsMHA))


def mha_oracle(mha, x_q, x_kv, keep):
    """Float64 multi-head attention written with explicit loops over heads and d_head scaling."""
    weight = {name: getattr(mha, name).weight.double() for name in ("w_q", "w_k", "w_v", "w_o")}
    bias = {name: getattr(mha, name).bias.double() for name in ("w_q", "w_k", "w_v", "w_o")}
    d = mha.d_head
    heads = []
    for j in range(mha.num_heads):
        rows = slice(j * d, (j + 1) * d)
        q = x_q @ weight["w_q"][rows].T + bias["w_q"][rows]
        k = x_kv @ weight["w_k"][rows].T + bias["w_k"][rows]
        v = x_kv @ weight["w_v"][rows].T + bias["w_v"][rows]
        s = q @ k.transpose(-2, -1) / math.sqrt(d)
        if keep is not None:
            s = s.masked_fill(~keep, float("-inf"))
        heads.append(torch.softmax(s, dim=-1) @ v)
    return torch.cat(heads, dim=-1) @ weight["w_o"].T + bias["w_o"]


def check_mha_formula(mha, x_q, x_kv, keep) -> None:
    out, _ = mha(x_q, x_kv, keep)
    assert out.shape == x_q.shape, "output has the query input's shape [b, l, d_model]"
    tolerance.assert_close(out, mha_oracle(mha, x_q, x_kv, keep), "MHA output")


@pytest.mark.claim("attention.scale.sqrt-dk", "mha.shape-preserving", "attention.formula")
@fixture_ok
@given(problem=mha_problems().filter(lambda p: p["mask"] == "none" or p["mask"] == "causal"))
def test_mha_matches_loop_oracle_with_d_head_scaling(problem, device):
    problem = {**problem, "num_k": problem["num_q"]}  # causal masks without fully masked rows
    with torch.no_grad():
        check_mha_formula(*build(problem, device))


@pytest.mark.claim("attention.scale.sqrt-dk")
def test_mha_formula_check_rejects_d_model_scaling(device):
    p = {"num_heads": 4, "d_head": 2, "batch": 1, "num_q": 3, "num_k": 3, "mask": "none", "seed": 3}
    with torch.no_grad(), pytest.raises(AssertionError):
        check_mha_formula(*build(p, device, mut.DModelScaleMHA))


# --- parameters ---------------------------------------------------------------------------------------------


def parameter_counts(cls, d_model: int, heads: tuple[int, ...]) -> dict[int, int]:
    return {h: sum(p.numel() for p in cls(d_model, h).parameters()) for h in heads}


def check_params_independent_of_heads(cls) -> None:
    counts = parameter_counts(cls, 16, (1, 2, 4, 8))
    assert len(set(counts.values())) == 1, f"parameter count depends on the number of heads: {counts}"


@pytest.mark.claim("mha.params-independent-of-heads", "mha.concat-width")
def test_parameter_count_does_not_depend_on_heads():
    # With d_head = d_model / h the 3h projection blocks always add up to 3 d_model^2 weights.
    check_params_independent_of_heads(MultiHeadAttention)
    assert parameter_counts(MultiHeadAttention, 16, (4,))[4] == 4 * (16 * 16 + 16)
    for h in (1, 2, 4, 8):
        mha = MultiHeadAttention(16, h)
        assert mha.num_heads * mha.d_head == 16, "concatenated heads are d_model wide"


@pytest.mark.claim("mha.params-independent-of-heads")
def test_params_check_rejects_wide_heads():
    with pytest.raises(AssertionError):
        check_params_independent_of_heads(mut.WideHeadsMHA)


def check_head_blocks_are_learnable(mha, x: torch.Tensor) -> None:
    """The attention function has no parameters; every one of the 3h per-head Q/K/V blocks (row slices of
    w_q, w_k, w_v) and w_o receives a gradient from a generic loss, so each is a learnable matrix."""
    out, _ = mha(x, x)
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype).to(out.device)
    (out * probe).sum().backward()
    for name in ("w_q", "w_k", "w_v"):
        grad = getattr(mha, name).weight.grad
        for j in range(mha.num_heads):
            block = grad[mha.head_slice(j)]
            assert tuple(block.shape) == (mha.d_head, mha.d_model), f"{name} block of head {j}"
            assert block.abs().max() > 0, f"{name} block of head {j} gets no gradient: not a learnable matrix"
    assert mha.w_o.weight.grad.abs().max() > 0, "w_o gets no gradient"


@pytest.mark.claim("mha.params-independent-of-heads")
@fixture_ok
@given(heads=st.sampled_from([1, 2, 4]), seed=st.integers(0, 2**16))
def test_attention_function_has_no_parameters_and_each_head_block_learns(heads, seed, device):
    assert not hasattr(sdpa_function, "parameters"), "the attention function is a plain function"
    x = randn(torch.Generator().manual_seed(seed), 2, 4, 8, device=device)
    check_head_blocks_are_learnable(make_mha(MultiHeadAttention, 8, heads, device, seed), x)


@pytest.mark.claim("mha.params-independent-of-heads")
def test_head_block_check_rejects_shared_projection(device):
    x = randn(torch.Generator().manual_seed(0), 2, 4, 8, device=device)
    with pytest.raises(AssertionError, match="head 1 gets no gradient"):
        check_head_blocks_are_learnable(make_mha(mut.SharedHeadBlockMHA, 8, 4, device), x)


def check_heads_concatenated_in_order(mha, x_q, x_kv) -> None:
    """The output projection reads [head_0 | head_1 | ... | head_(h-1)], h * d_head = d_model columns, head j
    in columns j*d_head : (j+1)*d_head; the heads are recomputed here from the weight slices."""
    seen: list[torch.Tensor] = []
    hook = mha.w_o.register_forward_hook(lambda m, args, result: seen.append(args[0]))
    try:
        out, _ = mha(x_q, x_kv)
    finally:
        hook.remove()
    concat = seen[-1]
    assert concat.shape[-1] == mha.num_heads * mha.d_head == mha.d_model, "concatenation width"
    d = mha.d_head
    for j in range(mha.num_heads):
        rows = slice(j * d, (j + 1) * d)
        q, k, v = (
            x @ getattr(mha, name).weight[rows].double().T + getattr(mha, name).bias[rows].double()
            for name, x in (("w_q", x_q), ("w_k", x_kv), ("w_v", x_kv))
        )
        head = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1) @ v
        tolerance.assert_close(concat[..., rows], head, f"columns {j * d}:{(j + 1) * d} hold head {j}")
    tolerance.assert_close(out, mha.w_o(concat), "output = w_o(concatenation)")


@pytest.mark.claim("mha.concat-width")
@fixture_ok
@given(problem=mha_problems())
def test_heads_are_concatenated_in_order(problem, device):
    mha, x_q, x_kv, _ = build(problem, device)
    with torch.no_grad():
        check_heads_concatenated_in_order(mha, x_q, x_kv)


@pytest.mark.claim("mha.concat-width")
@pytest.mark.parametrize("mutant", [mut.SummedHeadsMHA, mut.ReversedHeadsMHA])
def test_concatenation_check_rejects_summed_and_reversed_heads(mutant, device):
    p = {"num_heads": 2, "d_head": 3, "batch": 2, "num_q": 3, "num_k": 4, "mask": "none", "seed": 4}
    mha, x_q, x_kv, _ = build(p, device, mutant)
    with torch.no_grad(), pytest.raises(AssertionError, match="hold head"):
        check_heads_concatenated_in_order(mha, x_q, x_kv)


def reference_value_path(mha: MultiHeadAttention, head: int) -> torch.Tensor:
    cols = mha.head_slice(head)
    return mha.w_o.weight[:, cols].double() @ mha.w_v.weight[cols, :].double()  # float64: no rounding rank


def check_value_low_rank(value_path, mha, d_model: int) -> None:
    for j in range(mha.num_heads):
        path = value_path(mha, j).detach().double()
        assert tuple(path.shape) == (d_model, d_model)
        rank = int(torch.linalg.matrix_rank(path))
        assert rank <= mha.d_head, f"head {j}: value path rank {rank} > d_head {mha.d_head}"


@pytest.mark.claim("mha.value-low-rank")
@pytest.mark.parametrize("heads", [2, 4, 8])
def test_value_path_has_rank_at_most_d_head(heads):
    torch.manual_seed(heads)
    mha = MultiHeadAttention(16, heads)
    check_value_low_rank(reference_value_path, mha, 16)
    d = mha.d_head
    # Parameter identity: W_v_j (d_head x d_model) + W_o_j (d_model x d_head) = W_q_j + W_k_j
    # = 2 d_model d_head.
    rows = mha.head_slice(0)
    value_params = mha.w_v.weight[rows].numel() + mha.w_o.weight[:, rows].numel()
    assert value_params == mha.w_q.weight[rows].numel() + mha.w_k.weight[rows].numel() == 2 * 16 * d


@pytest.mark.claim("mha.value-low-rank")
def test_value_rank_check_rejects_wide_heads():
    torch.manual_seed(0)
    with pytest.raises(AssertionError):
        check_value_low_rank(lambda m, j: m.value_path(j), mut.WideHeadsMHA(16, 4), 16)


def check_qkv_differ_at_init(mha, x) -> None:
    with torch.no_grad():
        q, k, v = mha.w_q(x), mha.w_k(x), mha.w_v(x)
    for a, b, names in ((q, k, "Q, K"), (q, v, "Q, V"), (k, v, "K, V")):
        assert (a - b).abs().max() > 0.01, f"{names} are identical at initialisation"


@pytest.mark.claim("attention.qkv-equal-at-init")
def test_fresh_mha_gives_different_q_k_v_for_the_same_input(device):
    # Refutes "Q, K and V are identical at initialisation": the three matrices are drawn independently.
    x = randn(torch.Generator().manual_seed(0), 1, 4, 16, device=device)
    for seed in range(3):
        check_qkv_differ_at_init(make_mha(MultiHeadAttention, 16, 4, device, seed), x)


@pytest.mark.claim("attention.qkv-equal-at-init")
def test_qkv_check_rejects_shared_initialisation(device):
    x = randn(torch.Generator().manual_seed(0), 1, 4, 16, device=device)
    with pytest.raises(AssertionError):
        check_qkv_differ_at_init(make_mha(mut.SharedInitMHA, 16, 4, device), x)


def check_self_attention_with_distinct_qkv(mha, x) -> None:
    """Self-attention is three different projections of one sequence: Q, K and V differ pairwise, the
    weights are [l, l] over that sequence, and the output is attention(x W_q, x W_k, x W_v)."""
    with torch.no_grad():
        q, k, v = mha.w_q(x), mha.w_k(x), mha.w_v(x)
        for a, b, names in ((q, k, "Q, K"), (q, v, "Q, V"), (k, v, "K, V")):
            tolerance.assert_differs(a, b, f"{names} of self-attention")
        out, w = mha(x, x)
        assert tuple(w.shape[-2:]) == (x.shape[1], x.shape[1]), "self-attention weights are [l, l]"
        tolerance.assert_close(out, mha_oracle(mha, x, x, None), "self-attention with three projections")


@pytest.mark.claim("attention.self.equal-qkv-as-stated", "attention.self.same-input")
@fixture_ok
@given(heads=st.sampled_from([1, 2, 4]), length=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_self_attention_does_not_need_equal_q_k_v(heads, length, seed, device):
    x = randn(torch.Generator().manual_seed(seed), 2, length, 8, device=device)
    mha = make_mha(MultiHeadAttention, 8, heads, device, seed)
    check_self_attention_with_distinct_qkv(mha, x)
    # Forcing Q = K = V is another function of the same x, not a purer self-attention.
    equal = make_mha(mut.QueryForAllMHA, 8, heads, device, seed)
    with torch.no_grad():
        tolerance.assert_differs(equal(x, x)[0], mha(x, x)[0], "Q = K = V vs self-attention, same weights")


@pytest.mark.claim("attention.self.equal-qkv-as-stated")
def test_self_attention_check_rejects_query_for_all(device):
    x = randn(torch.Generator().manual_seed(0), 2, 4, 8, device=device)
    with pytest.raises(AssertionError, match="three projections"):
        check_self_attention_with_distinct_qkv(make_mha(mut.QueryForAllMHA, 8, 2, device), x)


def check_output_matrix_is_square(mha) -> None:
    """With d_head = d_model / h the concatenation is d_model wide and w_o is d_model x d_model."""
    d = mha.d_model
    assert mha.num_heads * mha.d_head == d, "concatenated heads are d_model wide"
    assert tuple(mha.w_o.weight.shape) == (d, d), f"w_o is {tuple(mha.w_o.weight.shape)}, not square"


@pytest.mark.claim("mha.output-compresses-as-stated", "mha.shape-preserving")
@pytest.mark.parametrize("heads", [1, 2, 4, 8])
def test_output_matrix_compresses_nothing_in_the_standard_layout(heads, device):
    mha = make_mha(MultiHeadAttention, 16, heads, device)
    check_output_matrix_is_square(mha)
    x = randn(torch.Generator().manual_seed(heads), 2, 3, 16, device=device)
    with torch.no_grad():
        assert mha(x, x)[0].shape == x.shape, "the output has the input's shape"


@pytest.mark.claim("mha.output-compresses-as-stated")
def test_output_matrix_compresses_only_for_wide_heads():
    wide = mut.WideHeadsMHA(16, 4)  # the condition's case: 4 full-width heads, a 64-wide concatenation
    assert tuple(wide.w_o.weight.shape) == (16, 64), "w_o compresses 4 * 16 columns back to 16"
    with pytest.raises(AssertionError, match="not square"):
        check_output_matrix_is_square(wide)


# --- cross-attention ----------------------------------------------------------------------------------------


def check_memory_permutation_invariance(mha, x, memory, mem_pad, perm) -> None:
    out, _ = mha(x, memory, key_padding_to_attention_mask(mem_pad))
    out_p, _ = mha(x, memory[:, perm], key_padding_to_attention_mask(mem_pad[:, perm]))
    tolerance.assert_close(out_p, out, "cross-attention after permuting memory")


@pytest.mark.claim("attention.cross.memory-permutation-invariant", "attention.cross.sources")
@fixture_ok
@given(seed=st.integers(0, 2**16), t=st.integers(1, 4), s=st.integers(2, 5), data=st.data())
def test_cross_attention_ignores_memory_order(seed, t, s, data, device):
    g = torch.Generator().manual_seed(seed)
    mha = make_mha(MultiHeadAttention, 8, 2, device, seed)
    x, memory = randn(g, 2, t, 8, device=device), randn(g, 2, s, 8, device=device)
    mem_pad = torch.ones(2, s, dtype=torch.bool, device=device)
    mem_pad[1, s - 1] = False
    perm = torch.tensor(data.draw(st.permutations(range(s))), device=device)
    with torch.no_grad():
        check_memory_permutation_invariance(mha, x, memory, mem_pad, perm)
        # Sources: queries come from x (output length t), keys/values from memory (weights over s).
        out, w = mha(x, memory, key_padding_to_attention_mask(mem_pad))
        assert tuple(out.shape) == (2, t, 8) and tuple(w.shape) == (2, 2, t, s)


@pytest.mark.claim("attention.cross.memory-permutation-invariant")
def test_memory_permutation_check_rejects_positional_mutant(device):
    g = torch.Generator().manual_seed(0)
    mha = make_mha(mut.PositionalMemoryMHA, 8, 2, device)
    x, memory = randn(g, 2, 3, 8, device=device), randn(g, 2, 4, 8, device=device)
    mem_pad = torch.ones(2, 4, dtype=torch.bool, device=device)
    with torch.no_grad(), pytest.raises(AssertionError):
        check_memory_permutation_invariance(
            mha, x, memory, mem_pad, torch.tensor([2, 0, 3, 1], device=device)
        )


# --- incremental decoding with a LayerKVCache --------------------------------------------------------------


def check_incremental_equals_full(mha, x, chunks: list[int], cache, alignment: str = "bottom-right") -> None:
    """Feeding ``x`` chunk by chunk through a cache, each chunk with a causal mask over all cached keys,
    reproduces the full causal self-attention."""
    n = x.shape[1]
    full, _ = mha(x, x, causal_mask(n, n, device=x.device))
    outs, start = [], 0
    for size in chunks:
        chunk = x[:, start : start + size]
        total = start + size
        # One newest query needs no mask (it may see every cached key); a chunk needs the causal one.
        mask = causal_mask(size, total, alignment=alignment, device=x.device) if size > 1 else None
        out, w = mha(chunk, chunk, mask, cache)
        assert w.shape[-1] == total, "a chunk attends over every cached position"
        outs.append(out)
        start = total
    tolerance.assert_close(torch.cat(outs, dim=1), full, "incremental vs full")


@pytest.mark.claim(
    "kvcache.equals-recompute", "kvcache.chunked-prefill", "kvcache.only-kv", "mask.causal.alignment"
)
@pytest.mark.parametrize("chunks", [[1, 1, 1, 1, 1], [3, 1, 1], [2, 3], [5]])
def test_cached_chunks_equal_full_causal_attention(chunks, device):
    mha = make_mha(MultiHeadAttention, 8, 2, device)
    x = randn(torch.Generator().manual_seed(1), 2, 5, 8, device=device)
    cache = LayerKVCache()
    with torch.no_grad():
        check_incremental_equals_full(mha, x, chunks, cache)
    assert cache.length == 5 and cache.k is not None and tuple(cache.k.shape) == (2, 2, 5, 4)
    # Only keys and values are kept; past queries are never needed.
    assert [f.name for f in dataclasses.fields(LayerKVCache)] == ["k", "v"]
    whole = KVCache.empty(3)
    assert len(whole.self_attn) == 3 and whole.cross_attn == [None, None, None] and whole.position == 0


@pytest.mark.claim("mask.causal.inference-noop")
def test_single_newest_query_needs_no_mask(device):
    mha = make_mha(MultiHeadAttention, 8, 2, device)
    x = randn(torch.Generator().manual_seed(2), 1, 4, 8, device=device)
    cache = LayerKVCache()
    with torch.no_grad():
        full, _ = mha(x, x, causal_mask(4, 4, device=device))
        steps = [mha(x[:, t : t + 1], x[:, t : t + 1], None, cache)[0] for t in range(4)]
    tolerance.assert_close(torch.cat(steps, dim=1), full, "token by token without a mask")


@pytest.mark.claim("kvcache.equals-recompute", "mask.causal.alignment")
def test_incremental_check_rejects_overwriting_cache_and_top_left_chunks(device):
    mha = make_mha(MultiHeadAttention, 8, 2, device)
    x = randn(torch.Generator().manual_seed(3), 2, 5, 8, device=device)
    with torch.no_grad():
        with pytest.raises(AssertionError):
            check_incremental_equals_full(mha, x, [1, 1, 1, 1, 1], mut.OverwritingCache())
        # Top-left alignment hides the cache from a later chunk's first queries: wrong for decoding.
        with pytest.raises(AssertionError):
            check_incremental_equals_full(mha, x, [2, 3], LayerKVCache(), alignment="top-left")
