"""Scaled dot-product attention: formula, weights, masking, padding, symmetry, scale, precision.

Pattern: every contract is a ``check_*`` function taking an implementation (reference or mutant). The
reference must pass it (mostly under hypothesis), and a planted-bug mutant from ``mutants_attention``
must fail the very same function, so the checks are known to have teeth.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.reference import mutants_attention as mut
from transformer_conformance.reference import tolerance
from transformer_conformance.reference.attention import scaled_dot_product_attention as sdpa
from transformer_conformance.reference.masks import additive_mask, causal_mask

# The ``device`` fixture is an immutable parameter, safe to share across hypothesis examples.
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
F64 = torch.float64


def randn(g: torch.Generator, *shape: int, device: torch.device, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=F64).to(device=device, dtype=dtype)


def oracle(q, k, v, keep=None, bias=None, scale=None):
    """Float64 textbook attention, written independently of the reference: softmax over visible keys."""
    q, k, v = q.double(), k.double(), v.double()
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = torch.einsum("...qd,...kd->...qk", q, k) * scale
    if bias is not None:
        s = s + bias.double()
    if keep is None:
        keep = torch.ones_like(s, dtype=torch.bool)
    keep = keep.expand(s.shape)
    any_visible = keep.any(-1, keepdim=True)
    w = torch.softmax(s.masked_fill(~keep, float("-inf")).masked_fill(~any_visible, 0.0), dim=-1)
    w = w * any_visible  # fully masked rows: zero weights (project policy)
    return torch.einsum("...qk,...kd->...qd", w, v), w


@st.composite
def problems(draw, *, with_mask: bool = True, fully_masked_rows: bool = True):
    """Shapes (num_q != num_k and d_v != d_k allowed), a seed, and optionally a random keep-mask."""
    dims = {
        "batch": draw(st.integers(1, 2)),
        "num_q": draw(st.integers(1, 5)),
        "num_k": draw(st.integers(1, 5)),
        "d_k": draw(st.integers(1, 6)),
        "d_v": draw(st.integers(1, 6)),
    }
    seed = draw(st.integers(0, 2**16))
    mask_kind = draw(st.sampled_from(["none", "random", "causal"])) if with_mask else "none"
    return dims, seed, mask_kind, fully_masked_rows


def build(problem, device, dtype=F64):
    dims, seed, mask_kind, fully_masked_rows = problem
    g = torch.Generator().manual_seed(seed)
    b, nq, nk = dims["batch"], dims["num_q"], dims["num_k"]
    q = randn(g, b, nq, dims["d_k"], device=device, dtype=dtype)
    k = randn(g, b, nk, dims["d_k"], device=device, dtype=dtype)
    v = randn(g, b, nk, dims["d_v"], device=device, dtype=dtype)
    keep = None
    if mask_kind == "random":
        keep = (torch.rand(b, nq, nk, generator=g) < 0.6).to(device)
        if not fully_masked_rows:
            keep[..., 0] = True
    elif mask_kind == "causal":
        keep = causal_mask(nq, nk, device=device)
        if not fully_masked_rows:
            keep = keep | (torch.arange(nk, device=device) == 0)
    return q, k, v, keep


# --- formula against a float64 oracle -------------------------------------------------------------


def check_formula(impl, q, k, v, keep) -> None:
    out, w = impl(q, k, v, keep)
    o_out, o_w = oracle(q, k, v, keep)
    assert tuple(out.shape) == (*q.shape[:-1], v.shape[-1]), "output shape [*batch, num_q, d_v]"
    assert tuple(w.shape) == (*q.shape[:-1], k.shape[-2]), "weights shape [*batch, num_q, num_k]"
    tolerance.assert_close(w, o_w, "weights")
    tolerance.assert_close(out, o_out, "output")


@pytest.mark.claim("attention.formula", "attention.shapes", "attention.scale.sqrt-dk")
@fixture_ok
@given(problem=problems(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_matches_float64_oracle(problem, dtype, device):
    check_formula(sdpa, *build(problem, device, dtype))


@pytest.mark.claim("attention.formula", "attention.scale.sqrt-dk")
@pytest.mark.parametrize("mutant", [mut.no_scale, mut.scale_by_dk, mut.column_softmax])
def test_formula_check_rejects_mutants(mutant, device):
    g = torch.Generator().manual_seed(0)
    q, k, v = (
        randn(g, 2, 3, 4, device=device),
        randn(g, 2, 5, 4, device=device),
        randn(g, 2, 5, 3, device=device),
    )
    with pytest.raises(AssertionError):
        check_formula(mutant, q, k, v, None)


# --- weights: range, rows, fully masked rows, convex combination -------------------------------------


def check_weight_rows(impl, q, k, v, keep) -> None:
    out, w = impl(q, k, v, keep)
    assert bool(torch.isfinite(w).all()) and bool(torch.isfinite(out).all()), "no NaN/Inf"
    assert bool(((w >= 0) & (w <= 1)).all()), "every weight in [0, 1]"
    visible = torch.ones_like(w, dtype=torch.bool) if keep is None else keep.expand(w.shape)
    has_key = visible.any(-1)
    tolerance.assert_close(w.sum(-1)[has_key], torch.ones_like(w.sum(-1)[has_key], dtype=F64), "row sums")
    assert bool((w[~has_key] == 0).all()), "fully masked row: all weights exactly 0"
    assert bool((out[~has_key] == 0).all()), "fully masked row: output exactly 0"


@pytest.mark.claim(
    "attention.weights.range", "attention.weights.rows-sum-to-one", "attention.fully-masked-row"
)
@fixture_ok
@given(problem=problems(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_weights_in_unit_interval_rows_sum_to_one_fully_masked_rows_zero(problem, dtype, device):
    check_weight_rows(sdpa, *build(problem, device, dtype))


@pytest.mark.claim("attention.weights.rows-sum-to-one", "attention.fully-masked-row")
@pytest.mark.parametrize(
    "mutant",
    [mut.plain_softmax_attention, mut.uniform_fully_masked, mut.column_softmax, mut.zero_after_softmax],
)
def test_weight_rows_check_rejects_mutants(mutant, device):
    g = torch.Generator().manual_seed(1)
    q, k, v = (
        randn(g, 1, 4, 3, device=device),
        randn(g, 1, 4, 3, device=device),
        randn(g, 1, 4, 2, device=device),
    )
    keep = causal_mask(4, 4, device=device).clone()
    keep[0] = False  # one fully masked row
    with pytest.raises(AssertionError):
        check_weight_rows(mutant, q, k, v, keep)


def check_convex_combination(impl, q, k, v, keep) -> None:
    """Each output row lies in the box spanned by the visible value rows (a convex combination)."""
    out, _ = impl(q, k, v, keep)
    visible = torch.ones(q.shape[:-1] + k.shape[-2:-1], dtype=torch.bool, device=q.device)
    visible = visible if keep is None else keep.expand(visible.shape)
    slack = tolerance.tolerance_for(out.dtype).atol
    for index in torch.nonzero(visible.any(-1)).tolist():
        *batch, i = index
        rows = v[tuple(batch)][visible[tuple(batch)][i]]
        o = out[tuple(batch)][i]
        assert bool((o >= rows.min(0).values - slack).all() and (o <= rows.max(0).values + slack).all()), (
            index
        )


@pytest.mark.claim("attention.convex-combination")
@fixture_ok
@given(problem=problems(fully_masked_rows=False))
def test_output_is_convex_combination_of_visible_values(problem, device):
    q, k, v, keep = build(problem, device)
    check_convex_combination(sdpa, q, k, v + 10.0, keep)


@pytest.mark.claim("attention.convex-combination", "mask.zero-after-softmax-unnormalised")
def test_convex_combination_check_rejects_zero_after_softmax(device):
    g = torch.Generator().manual_seed(2)
    q, k = randn(g, 1, 4, 3, device=device), randn(g, 1, 4, 3, device=device)
    v = randn(g, 1, 4, 2, device=device) + 10.0
    with pytest.raises(AssertionError):
        check_convex_combination(mut.zero_after_softmax, q, k, v, causal_mask(4, 4, device=device))


@pytest.mark.claim("mask.zero-after-softmax-unnormalised")
def test_zeroing_after_softmax_leaves_rows_below_one(device):
    # The claim: masking after the softmax instead of before leaves every partially masked row short of 1.
    g = torch.Generator().manual_seed(3)
    q, k, v = (randn(g, 2, 5, 4, device=device) for _ in range(3))
    keep = causal_mask(5, 5, device=device)
    _, w_after = mut.zero_after_softmax(q, k, v, keep)
    sums = w_after.sum(-1)
    for row in range(sums.shape[-1] - 1):  # every row with a hidden key sums to less than one
        assert bool((sums[:, row] < 1).all()), "zeroing after softmax cannot raise a row sum"
        tolerance.assert_differs(sums[:, row], torch.ones_like(sums[:, row]), f"row {row} sum")
    _, w_ref = sdpa(q, k, v, keep)
    tolerance.assert_close(w_ref.sum(-1), torch.ones_like(sums), "reference row sums")


@pytest.mark.claim("attention.weights.column-layout")
def test_columns_do_not_sum_to_one_in_query_by_key_layout(device):
    # N2 says "columns sum to 1": that is the keys-by-queries layout. In [num_q, num_k] the rows do.
    g = torch.Generator().manual_seed(4)
    q, k, v = (
        randn(g, 1, 3, 4, device=device),
        randn(g, 1, 5, 4, device=device),
        randn(g, 1, 5, 2, device=device),
    )
    _, w = sdpa(q, k, v)
    tolerance.assert_close(w.sum(-1), torch.ones(1, 3, dtype=F64), "row sums")
    assert (w.sum(-2) - 1).abs().max() > 0.1, "column sums are not 1 (counterexample to the literal reading)"
    # The transposed layout is the notes' reading: there, columns sum to one.
    tolerance.assert_close(w.transpose(-2, -1).sum(-2), torch.ones(1, 3, dtype=F64), "column sums, [nk, nq]")


# --- causality, boolean vs additive, exact zeros, finite negatives ---------------------------------


def check_future_blind(impl, x, perturbation, device) -> None:
    """Self-attention with a causal mask: changing positions > i leaves output i unchanged."""
    n = x.shape[-2]
    keep = causal_mask(n, n, device=device)
    base, _ = impl(x, x, x, keep)
    for i in range(n - 1):
        changed = x.clone()
        changed[:, i + 1 :] = perturbation
        out, _ = impl(changed, changed, changed, keep)
        tolerance.assert_close(out[:, : i + 1], base[:, : i + 1].double(), f"outputs up to position {i}")


@pytest.mark.claim("mask.causal.future-blind")
@fixture_ok
@given(
    seed=st.integers(0, 2**16), n=st.integers(2, 6), perturbation=st.sampled_from([7.5, -1e10, float("nan")])
)
def test_causal_mask_makes_outputs_future_blind(seed, n, perturbation, device):
    x = randn(torch.Generator().manual_seed(seed), 2, n, 3, device=device)
    check_future_blind(sdpa, x, perturbation, device)


@pytest.mark.claim("mask.causal.future-blind")
@pytest.mark.parametrize(("mutant", "perturbation"), [(mut.ignores_mask, 7.5), (mut.nan_leak, float("nan"))])
def test_future_blind_check_rejects_mutants(mutant, perturbation, device):
    x = randn(torch.Generator().manual_seed(5), 2, 4, 3, device=device)
    with pytest.raises(AssertionError):
        check_future_blind(mutant, x, perturbation, device)


def check_boolean_equals_additive(impl, q, k, v, keep) -> None:
    out_b, w_b = impl(q, k, v, keep)
    out_a, w_a = impl(q, k, v, additive_mask(keep, dtype=q.dtype))
    o_out, o_w = oracle(q, k, v, keep)
    for what, actual, expected in (("bool weights", w_b, o_w), ("additive weights", w_a, o_w)):
        tolerance.assert_close(actual, expected, what)
    tolerance.assert_close(out_b, o_out, "bool output")
    tolerance.assert_close(out_a, o_out, "additive output")


@pytest.mark.claim("mask.boolean-equals-additive")
@fixture_ok
@given(problem=problems(fully_masked_rows=True).filter(lambda p: p[2] != "none"))
def test_boolean_and_additive_masks_agree(problem, device):
    check_boolean_equals_additive(sdpa, *build(problem, device))


@pytest.mark.claim("mask.boolean-equals-additive")
def test_boolean_additive_check_rejects_polarity_mutant(device):
    g = torch.Generator().manual_seed(6)
    q, k, v = (randn(g, 1, 4, 3, device=device) for _ in range(3))
    with pytest.raises(AssertionError):
        check_boolean_equals_additive(mut.additive_read_as_boolean, q, k, v, causal_mask(4, 4, device=device))


@pytest.mark.claim("attention.formula")
def test_finite_additive_bias_is_added_to_scores(device):
    g = torch.Generator().manual_seed(7)
    q, k, v = (
        randn(g, 2, 3, 4, device=device),
        randn(g, 2, 5, 4, device=device),
        randn(g, 2, 5, 2, device=device),
    )
    bias = randn(g, 3, 5, device=device)
    bias[0, 1] = float("-inf")
    out, w = sdpa(q, k, v, bias)
    o_out, o_w = oracle(q, k, v, keep=bias != float("-inf"), bias=bias.masked_fill(bias == float("-inf"), 0))
    tolerance.assert_close(out, o_out, "output with additive bias")
    tolerance.assert_close(w, o_w, "weights with additive bias")
    assert bool((w[:, 0, 1] == 0).all())


def check_masked_weights_exactly_zero(impl, q, k, v, keep, mask=None) -> None:
    """Hidden keys get weight exactly 0; rows with a visible key sum to one (``mask`` default: ``keep``)."""
    _, w = impl(q, k, v, keep if mask is None else mask)
    hidden = ~keep.expand(w.shape)
    assert bool((w[hidden] == 0).all()), f"masked weights must be exactly 0, max {w[hidden].abs().max():.3e}"
    rows = keep.expand(w.shape).any(-1)
    tolerance.assert_close(w.sum(-1)[rows], torch.ones_like(w.sum(-1)[rows], dtype=F64), "row sums")


@pytest.mark.claim("mask.neg-inf-exact-zero")
@fixture_ok
@given(problem=problems().filter(lambda p: p[2] != "none"), dtype=st.sampled_from([torch.float32, F64]))
def test_masked_weights_are_exactly_zero_and_rows_stay_normalised(problem, dtype, device):
    q, k, v, keep = build(problem, device, dtype)
    check_masked_weights_exactly_zero(sdpa, q, k, v, keep)
    check_masked_weights_exactly_zero(sdpa, q, k, v, keep, additive_mask(keep, dtype=dtype))


@pytest.mark.claim("mask.neg-inf-exact-zero")
def test_exact_zero_check_rejects_moderate_negative_fill(device):
    g = torch.Generator().manual_seed(8)
    q, k, v = (randn(g, 1, 4, 3, device=device) for _ in range(3))
    with pytest.raises(AssertionError):
        check_masked_weights_exactly_zero(
            mut.moderate_negative_mask, q, k, v, causal_mask(4, 4, device=device)
        )


@pytest.mark.claim("mask.finite-negative")
def test_finite_negative_bias_holds_for_small_scores_and_fails_for_scores_times_1e3(device):
    g = torch.Generator().manual_seed(9)
    q, k, v = (randn(g, 2, 6, 8, device=device, dtype=torch.float32) for _ in range(3))
    keep = causal_mask(6, 6, device=device)
    # Condition met: score differences far below 1e4, so the -1e4 bias behaves like -inf.
    check_masked_weights_exactly_zero(mut.finite_negative_mask, q, k, v, keep)
    # Condition broken: scores x1e3 exceed the bias; hidden keys get large weights.
    _, w = mut.finite_negative_mask(q * 1e3, k * 1e3, v, keep)
    assert w[~keep.expand(w.shape)].max() > 0.5, "a -1e4 bias is defeated by scores scaled by 1e3"
    with pytest.raises(AssertionError):
        check_masked_weights_exactly_zero(mut.finite_negative_mask, q * 1e3, k * 1e3, v, keep)
    # The reference (boolean where / -inf) is unaffected by the score scale.
    check_masked_weights_exactly_zero(sdpa, q * 1e3, k * 1e3, v, keep)
    check_masked_weights_exactly_zero(sdpa, q * 1e3, k * 1e3, v, keep, additive_mask(keep))


# --- padding ----------------------------------------------------------------------------------------


def check_padding_invariance(impl, pad_value: float, side: str, device) -> None:
    """Keys/values at padded positions hold ``pad_value``: outputs equal the clean float64 oracle."""
    g = torch.Generator().manual_seed(10)
    lengths = [2, 4, 5]
    b, nq, nk, d = 3, 3, 5, 4
    q, k, v = (
        randn(g, b, nq, d, device=device),
        randn(g, b, nk, d, device=device),
        randn(g, b, nk, d, device=device),
    )
    real = torch.zeros(b, nk, dtype=torch.bool, device=device)
    for row, length in enumerate(lengths):
        if side == "right":
            real[row, :length] = True
        else:
            real[row, nk - length :] = True
    expected, _ = oracle(q, k, v, real[:, None, :])
    k_pad = torch.where(real[..., None], k, torch.full_like(k, pad_value))
    v_pad = torch.where(real[..., None], v, torch.full_like(v, pad_value))
    out, w = impl(q, k_pad, v_pad, real[:, None, :])
    tolerance.assert_close(out, expected, f"output with pad value {pad_value} ({side} padding)")
    assert bool((w.masked_select(~real[:, None, :]) == 0).all()), "no weight on pad keys"


@pytest.mark.claim("mask.padding.invariance", "mask.padding.pad-value-arbitrary")
@pytest.mark.parametrize("pad_value", [0.0, 1e10, -1e10, float("nan"), float("inf")])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_contents_change_nothing(pad_value, side, device):
    check_padding_invariance(sdpa, pad_value, side, device)


@pytest.mark.claim("mask.padding.invariance")
@pytest.mark.parametrize(
    ("mutant", "pad_value"), [(mut.nan_leak, float("nan")), (mut.finite_negative_mask, 1e10)]
)
def test_padding_check_rejects_mutants(mutant, pad_value, device):
    with pytest.raises(AssertionError):
        check_padding_invariance(mutant, pad_value, "right", device)


# --- attention as a key-value lookup --------------------------------------------------------------------


def check_soft_lookup_hardens(impl, q, k, v) -> None:
    """Generic scores: every output row is a blend that equals no value row. One dominant key (each query
    rescaled so that its best scaled score leads the second by 60): the output is that key's value."""
    out, _ = impl(q, k, v)
    for b in range(q.shape[0]):
        for i in range(q.shape[1]):
            for j in range(k.shape[1]):
                tolerance.assert_differs(out[b, i], v[b, j], f"row {i} vs value row {j}, generic scores")
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    top = scores.topk(2, dim=-1).values
    factor = 60.0 / (top[..., 0] - top[..., 1])
    hard, _ = impl(q * factor[..., None], k, v)
    best = scores.argmax(-1)[..., None].expand(-1, -1, v.shape[-1])
    tolerance.assert_close(hard, v.gather(-2, best).double(), "output with one dominant score vs its value")


@st.composite
def lookup_problems(draw):
    """Two or more keys and a clear best key per query (a gap of at least 1e-3 between the top scores)."""
    b, nq, nk, d = 2, draw(st.integers(1, 4)), draw(st.integers(2, 5)), draw(st.integers(1, 6))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    q, k, v = (torch.randn(b, n, d, generator=g, dtype=F64) for n in (nq, nk, nk))
    top = (q @ k.transpose(-2, -1)).topk(2, dim=-1).values
    assume(bool(((top[..., 0] - top[..., 1]) > 1e-3).all()))
    return q, k, v


@pytest.mark.claim("attention.kv-lookup")
@fixture_ok
@given(problem=lookup_problems())
def test_attention_is_a_soft_lookup_that_hardens_with_one_dominant_score(problem, device):
    check_soft_lookup_hardens(sdpa, *(x.to(device) for x in problem))


@pytest.mark.claim("attention.kv-lookup")
def test_lookup_check_rejects_hard_lookup(device):
    g = torch.Generator().manual_seed(5)
    q, k, v = (randn(g, 1, n, 3, device=device) for n in (2, 4, 4))
    with pytest.raises(AssertionError, match="generic scores"):
        check_soft_lookup_hardens(mut.hard_lookup, q, k, v)


# --- batch independence, permutations, the diagonal ---------------------------------------------------


def check_batch_independence(impl, q, k, v) -> None:
    out, _ = impl(q, k, v)
    for b in range(q.shape[0]):
        alone, _ = impl(q[b : b + 1], k[b : b + 1], v[b : b + 1])
        tolerance.assert_close(out[b : b + 1], alone.double(), f"sample {b}")


@pytest.mark.claim("batch.independence")
@fixture_ok
@given(problem=problems(with_mask=False))
def test_samples_do_not_interact(problem, device):
    q, k, v, _ = build(problem, device)
    check_batch_independence(sdpa, q, k, v)


@pytest.mark.claim("batch.independence")
def test_batch_check_rejects_mutant(device):
    g = torch.Generator().manual_seed(11)
    with pytest.raises(AssertionError):
        check_batch_independence(mut.batch_leak, *(randn(g, 3, 4, 3, device=device) for _ in range(3)))


def check_permutation_equivariance(impl, x, perm, keep=None) -> None:
    """Self-attention: permuting the tokens by P permutes the outputs the same way, and the weights become
    P W P^T (W'[i, j] = W[perm[i], perm[j]])."""
    out, w = impl(x, x, x, keep)
    out_perm, w_perm = impl(x[:, perm], x[:, perm], x[:, perm], keep)
    tolerance.assert_close(out_perm, out[:, perm].double(), "outputs of permuted tokens")
    tolerance.assert_close(w_perm, w[:, perm][:, :, perm].double(), "weights of permuted tokens (P W P^T)")


@pytest.mark.claim("attention.permutation-equivariance", "attention.order-blind-as-stated")
@fixture_ok
@given(seed=st.integers(0, 2**16), n=st.integers(2, 6), data=st.data())
def test_permuting_tokens_permutes_outputs(seed, n, data, device):
    x = randn(torch.Generator().manual_seed(seed), 2, n, 3, device=device)
    perm = torch.tensor(data.draw(st.permutations(range(n))), device=device)
    check_permutation_equivariance(sdpa, x, perm)


@pytest.mark.claim("attention.permutation-equivariance", "attention.order-blind-as-stated")
def test_permutation_counterexamples(device):
    x = randn(torch.Generator().manual_seed(12), 1, 4, 3, device=device)
    perm = torch.tensor([1, 3, 0, 2], device=device)  # not a reversal, which keeps all distances |i - j|
    # Refuted reading "the same information": outputs are permuted, not identical.
    out, _ = sdpa(x, x, x)
    out_perm, _ = sdpa(x[:, perm], x[:, perm], x[:, perm])
    tolerance.assert_differs(out_perm, out, "outputs of the permuted sequence")
    # The condition matters: with a causal mask the property fails.
    with pytest.raises(AssertionError):
        check_permutation_equivariance(sdpa, x, perm, causal_mask(4, 4, device=device))
    # Teeth: a hidden position bias breaks it.
    with pytest.raises(AssertionError):
        check_permutation_equivariance(mut.relative_position_bias, x, perm)


@pytest.mark.claim("attention.self.diagonal-max")
def test_self_similarity_is_not_always_the_largest(device):
    # x1 = [1, 0], x2 = [2, 0] with identity projections: <x1, x1> = 1 < <x1, x2> = 2.
    x = torch.tensor([[[1.0, 0.0], [2.0, 0.0]]], dtype=F64, device=device)
    _, w = sdpa(x, x, x)
    assert w[0, 0, 1] > w[0, 0, 0], "token 1 attends more to token 2 than to itself"


# --- scores, scale, saturation -----------------------------------------------------------------------


def recovered_scores(impl, q, k_one):
    """The scaled score <q, k>/scale of one key, read back from the weights against a zero key."""
    keys = torch.stack([torch.zeros_like(k_one), k_one], dim=-2)
    values = torch.zeros(*keys.shape[:-1], 1, dtype=keys.dtype, device=keys.device)
    _, w = impl(q.unsqueeze(-2), keys, values)
    return torch.log(w[..., 0, 1]) - torch.log(w[..., 0, 0])


def check_score_is_scaled_dot_product(impl, q, k) -> None:
    expected = (q * k).sum(-1) / math.sqrt(q.shape[-1])
    tolerance.assert_close(recovered_scores(impl, q, k), expected, "recovered scores")


@pytest.mark.claim("attention.score-is-dot-product", "attention.scale.sqrt-dk")
def test_scores_are_unbounded_scaled_dot_products(device):
    g = torch.Generator().manual_seed(13)
    q, k = randn(g, 50, 16, device=device), randn(g, 50, 16, device=device)
    q[0], k[0] = 2.0, 3.0  # score 6 * 16 / 4 = 24: far outside [-1, 1]
    check_score_is_scaled_dot_product(sdpa, q, k)
    for mutant in (mut.cosine_scores, mut.scale_by_dk):
        with pytest.raises(AssertionError):
            check_score_is_scaled_dot_product(mutant, q, k)


def check_scaled_score_variance(impl, d_k: int, device) -> None:
    """With iid N(0, 1) entries, <q, k> has variance d_k, so the default-scaled score has variance 1.

    Statistics: each product q_i k_i has variance 1 and fourth moment 9, so the score s is a sum with
    kurtosis 3 + 6/d_k. The sample variance of N scores then has standard error
    sqrt((2 + 6/d_k) / N) * Var(s). We accept |sample variance - 1| <= 5 standard errors (fixed seed,
    N = 20000: about 0.05 at d_k = 64); a false alarm at 5 SE has probability below 1e-6.
    """
    n = 20000
    g = torch.Generator().manual_seed(14)
    q, k = randn(g, n, d_k, device=device), randn(g, n, d_k, device=device)
    unscaled = (q * k).sum(-1)
    se_unit = math.sqrt((2 + 6 / d_k) / n)
    assert abs(float(unscaled.var()) / d_k - 1) <= 5 * se_unit, "Var(<q, k>) = d_k"
    scaled = recovered_scores(impl, q, k)
    assert abs(float(scaled.var()) - 1) <= 5 * se_unit, f"scaled variance {float(scaled.var()):.4f}"


@pytest.mark.claim("attention.scale.variance")
@pytest.mark.parametrize("d_k", [16, 64])
def test_scaling_by_sqrt_dk_gives_unit_variance(d_k, device):
    check_scaled_score_variance(sdpa, d_k, device)


@pytest.mark.claim("attention.scale.variance")
@pytest.mark.parametrize("mutant", [mut.no_scale, mut.scale_by_dk])
def test_variance_check_rejects_mutants(mutant, device):
    with pytest.raises(AssertionError):
        check_scaled_score_variance(mutant, 64, device)


def mean_max_weight(impl, d_k: int, device, scale: float | None) -> float:
    g = torch.Generator().manual_seed(15)
    q, k = randn(g, 500, 1, d_k, device=device), randn(g, 500, 16, d_k, device=device)
    _, w = impl(q, k, torch.zeros(500, 16, 1, dtype=F64, device=device), scale=scale)
    return float(w.amax(-1).mean())


def check_not_saturated(impl, device) -> None:
    """With default scaling the typical largest weight over 16 keys stays far from 1 even at d_k = 512."""
    assert mean_max_weight(impl, 512, device, None) < 0.5


@pytest.mark.claim("attention.scale.softmax-saturation")
def test_unscaled_scores_saturate_softmax_as_dk_grows(device):
    unscaled = [mean_max_weight(sdpa, d, device, 1.0) for d in (4, 64, 512)]
    assert unscaled[0] < unscaled[1] < unscaled[2] and unscaled[2] > 0.9, unscaled
    # Near one-hot rows: the softmax Jacobian entry w(1 - w) of the top key shrinks towards 0.
    top = unscaled[2]
    assert top * (1 - top) < 0.1
    scaled = [mean_max_weight(sdpa, d, device, None) for d in (4, 64, 512)]
    assert max(scaled) - min(scaled) < 0.05, f"scaled attention does not sharpen with d_k: {scaled}"
    check_not_saturated(sdpa, device)
    with pytest.raises(AssertionError):
        check_not_saturated(mut.no_scale, device)


# --- precision, pattern size ----------------------------------------------------------------------------


def check_half_precision(impl, dtype, device, factor: float) -> None:
    """Half inputs (scores times ``factor``): finite, and within the differential rule of torch's own SDPA."""
    g = torch.Generator().manual_seed(16)
    q = (randn(g, 2, 5, 8, device=device) * factor).to(dtype)
    k = randn(g, 2, 7, 8, device=device).to(dtype)
    v = randn(g, 2, 7, 8, device=device).to(dtype)
    keep = causal_mask(5, 7, device=device)
    out, w = impl(q, k, v, keep)
    assert out.dtype == dtype and w.dtype == dtype, "results are cast back to the input dtype"
    oracle_out, _ = sdpa(q.double(), k.double(), v.double(), keep)
    baseline = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    comparison = tolerance.differential(out, oracle_out, baseline)
    assert comparison.ok, comparison.describe()


@pytest.mark.claim("attention.half-precision-softmax")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("factor", [1.0, 1e3])
def test_half_precision_against_float64_oracle(dtype, factor, device):
    # torch 2.13 runs float16/bfloat16 matmuls on CPU; the reference still upcasts (cast-compute-cast)
    # so that scores x1e3 cannot overflow float16 before the softmax.
    check_half_precision(sdpa, dtype, device, factor)


@pytest.mark.claim("attention.half-precision-softmax")
def test_half_precision_check_rejects_unstable_softmax(device):
    with pytest.raises(AssertionError):
        check_half_precision(mut.no_row_max_in_input_dtype, torch.float16, device, 1e3)


def check_pattern_size(impl, n: int, device) -> None:
    g = torch.Generator().manual_seed(17)
    q, k, v = (randn(g, 1, n, 4, device=device) for _ in range(3))
    _, w = impl(q, k, v)
    assert w.numel() == n * n, f"attention pattern for {n} tokens has {n}x{n} entries"


@pytest.mark.claim("attention.pattern-quadratic")
def test_attention_pattern_grows_quadratically(device):
    for n in (3, 6, 12):
        check_pattern_size(sdpa, n, device)
    g = torch.Generator().manual_seed(18)
    _, w = sdpa(
        randn(g, 2, 3, 4, device=device), randn(g, 2, 7, 4, device=device), randn(g, 2, 7, 1, device=device)
    )
    assert w.numel() == 2 * 3 * 7
    with pytest.raises(AssertionError):
        check_pattern_size(mut.first_query_only_weights, 6, device)
