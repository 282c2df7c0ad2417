"""Bad input to the attention family raises a clear error naming the argument, the expected and the actual.

Table-driven: each row builds its inputs on the ``device`` under test and names the arguments that the
message must mention. Errors are ``ReferenceInputError`` (value checks, always on) or jaxtyping's
``TypeCheckError`` (shape/dtype annotations; off under ``JAXTYPING_DISABLE=1``). Rows marked
``shapes_only`` have no value-check fallback and run only with shape checks on.
"""

import pytest
import torch
from jaxtyping import TypeCheckError

from tests.conftest import CHECKS_ENABLED
from tests.reference import mutants_attention as mut
from transformer_conformance.reference.attention import scaled_dot_product_attention as sdpa
from transformer_conformance.reference.cache import LayerKVCache
from transformer_conformance.reference.checking import ReferenceInputError
from transformer_conformance.reference.masks import (
    additive_mask,
    causal_mask,
    combine_masks,
    padding_mask_from_lengths,
)
from transformer_conformance.reference.multihead import MultiHeadAttention, split_heads


def qkv(device, nq=3, nk=4, dk=5, dv=6, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(2, nq, dk, generator=g).to(device, dtype),
        torch.randn(2, nk, dk, generator=g).to(device, dtype),
        torch.randn(2, nk, dv, generator=g).to(device, dtype),
    )


def wrong_dk(device, impl=sdpa):
    q, k, v = qkv(device)
    impl(q, k[..., :3], v)


def keys_values_count(device, impl=sdpa):
    q, k, v = qkv(device)
    impl(q, k, v[:, :2])


def mask_shape(device, impl=sdpa):
    q, k, v = qkv(device)
    impl(q, k, v, torch.ones(3, 5, dtype=torch.bool, device=device))


def mask_wrong_axis(device, impl=sdpa):
    q, k, v = qkv(device, nq=4, nk=3)
    impl(q, k, v, torch.ones(2, 3, 4, dtype=torch.bool, device=device))  # [b, num_k, num_q]: transposed


def additive_mask_pos_inf(device, impl=sdpa):
    q, k, v = qkv(device)
    bias = torch.zeros(3, 4, device=device)
    bias[0, 1] = float("inf")
    impl(q, k, v, bias)


def additive_mask_nan(device, impl=sdpa):
    q, k, v = qkv(device)
    bias = torch.zeros(3, 4, device=device)
    bias[2, 0] = float("nan")
    impl(q, k, v, bias)


def encdec_cache_other_source(device, impl=sdpa):
    """A cache started on one source, stepped with another memory of the same length."""
    from transformer_conformance.reference.config import TransformerConfig
    from transformer_conformance.reference.model import EncoderDecoder

    torch.manual_seed(0)
    model = EncoderDecoder(TransformerConfig.tiny()).to(device).eval()
    src_a = torch.tensor([[5, 6, 7, 8]], device=device)
    src_b = torch.tensor([[9, 10, 11, 12]], device=device)
    bos = torch.tensor([[1]], device=device)
    with torch.no_grad():
        cache = model.new_cache(1)
        model.step(bos, model.encode(src_a), cache)
        model.step(bos, model.encode(src_b), cache)


def mask_integer(device, impl=sdpa):
    q, k, v = qkv(device)
    impl(q, k, v, torch.ones(3, 4, dtype=torch.int64, device=device))


def mask_other_device(device, impl=sdpa):
    q, k, v = qkv(device)
    impl(q, k, v, torch.ones(3, 4, dtype=torch.bool, device="meta"))


def key_other_device(device, impl=sdpa):
    q, k, v = qkv(device)
    impl(q, k.to("meta"), v)


def integer_query(device, impl=sdpa):
    q, k, v = qkv(device)
    impl(q.long(), k, v)


def mixed_dtypes(device, impl=sdpa):
    q, k, v = qkv(device)
    impl(q, k.double(), v)


def scale_nan(device, impl=sdpa):
    impl(*qkv(device), scale=float("nan"))


def scale_negative(device, impl=sdpa):
    impl(*qkv(device), scale=-1.0)


def mha_mixed_dtypes(device):
    mha = MultiHeadAttention(8, 2).to(device)
    mha(torch.randn(1, 3, 8, device=device), torch.randn(1, 3, 8, device=device, dtype=torch.float64))


def cache_batch_mismatch(device):
    from transformer_conformance.reference.config import TransformerConfig
    from transformer_conformance.reference.model import DecoderOnlyLM

    lm = DecoderOnlyLM(TransformerConfig.tiny()).to(device).eval()
    lm.step(torch.zeros(2, 1, dtype=torch.long, device=device), lm.new_cache(1))


def bad_alignment(device):
    causal_mask(2, 3, alignment="bottom-left", device=device)  # type: ignore[arg-type]


def negative_num_q(device):
    causal_mask(-1, 3, device=device)


def lengths_too_long(device):
    padding_mask_from_lengths(torch.tensor([2, 7], device=device), 5)


def combine_float_mask(device):
    combine_masks(torch.zeros(2, 2, device=device), causal_mask(2, 2, device=device))


def combine_incompatible(device):
    combine_masks(causal_mask(2, 2, device=device), causal_mask(3, 3, device=device))


def additive_integer_dtype(device):
    additive_mask(causal_mask(2, 2, device=device), dtype=torch.int32)


def mha_indivisible(device):
    MultiHeadAttention(10, 3)


def mha_query_width(device):
    mha = MultiHeadAttention(8, 2).to(device)
    x = torch.randn(1, 3, 8, device=device)
    mha(torch.randn(1, 3, 6, device=device), x)


def mha_mask_shape(device):
    mha = MultiHeadAttention(8, 2).to(device)
    x = torch.randn(1, 3, 8, device=device)
    mha(x, x, torch.ones(4, 4, dtype=torch.bool, device=device))


def split_indivisible(device):
    split_heads(torch.randn(1, 2, 7, device=device), 2)


def cache_heads_mismatch(device):
    cache = LayerKVCache()
    cache.append(torch.randn(1, 2, 3, 4, device=device), torch.randn(1, 2, 3, 4, device=device))
    cache.append(torch.randn(1, 3, 1, 4, device=device), torch.randn(1, 3, 1, 4, device=device))


CASES = [
    # (builder, names the message must contain, shapes_only)
    (wrong_dk, ["'k'"], False),
    (keys_values_count, ["'v'"], False),
    (mask_shape, ["'mask'", "[2, 3, 4]", "[3, 5]"], False),
    (mask_wrong_axis, ["'mask'", "[2, 4, 3]", "[2, 3, 4]"], False),
    (mask_integer, ["'mask'"], False),
    (additive_mask_pos_inf, ["'mask'", "+inf or NaN"], False),
    (additive_mask_nan, ["'mask'", "+inf or NaN"], False),
    (encdec_cache_other_source, ["'memory'", "a different memory", "[1, 4, 16]"], False),
    (mask_other_device, ["mask on meta"], False),
    (key_other_device, ["k on meta"], False),
    (integer_query, ["'q'"], False),
    (mixed_dtypes, ["k: torch.float64"], False),
    (scale_nan, ["'scale'", "nan"], False),
    (scale_negative, ["'scale'", "-1.0"], False),
    (mha_mixed_dtypes, ["'x_kv'", "torch.float32", "torch.float64"], False),
    (cache_batch_mismatch, ["'cache'", "batch size 2", "batch 1"], False),
    (bad_alignment, ["'alignment'", "bottom-left"], False),
    (negative_num_q, ["'num_q'", "-1"], False),
    (lengths_too_long, ["'lengths'", "[0, 5]", "[2, 7]"], False),
    (combine_float_mask, ["masks"], False),
    (combine_incompatible, ["'masks'", "(2, 2), (3, 3)"], False),
    (additive_integer_dtype, ["'dtype'", "int32"], False),
    (mha_indivisible, ["'num_heads'", "10"], False),
    (mha_query_width, ["'x_q'"], True),
    (mha_mask_shape, ["'mask'", "[4, 4]"], False),
    (split_indivisible, ["'x'", "7"], False),
    (cache_heads_mismatch, ["'k_new'", "[1, 2, 4]", "[1, 3, 4]"], False),
]


def check_clear_error(run, names) -> None:
    """``run()`` must raise ReferenceInputError / TypeCheckError whose message names every entry of ``names``
    and states the expected and the actual value; no error, or any other error, fails the check."""
    try:
        run()
    except (ReferenceInputError, TypeCheckError) as err:
        message = str(err)
        for name in names:
            assert name in message, f"message should mention {name!r}: {message}"
        if isinstance(err, ReferenceInputError):
            assert "expected" in message and "got" in message, message
        else:
            assert "Actual value" in message and "Expected type" in message, message
    except Exception as err:
        raise AssertionError(f"unclear error {type(err).__name__}: {err}") from err
    else:
        raise AssertionError("bad input was accepted silently")


@pytest.mark.claim("attention.qk-same-width", "attention.kv-same-count", "attention.shapes")
@pytest.mark.parametrize(("builder", "names", "shapes_only"), CASES, ids=[c[0].__name__ for c in CASES])
def test_bad_input_raises_clear_error(builder, names, shapes_only, device):
    if shapes_only and not CHECKS_ENABLED:
        pytest.skip("JAXTYPING_DISABLE is set: run-time shape checks are off")
    check_clear_error(lambda: builder(device), names)


@pytest.mark.claim("attention.qk-same-width", "attention.kv-same-count")
@pytest.mark.parametrize(
    "builder",
    [wrong_dk, keys_values_count, mask_shape, additive_mask_pos_inf, additive_mask_nan],
    ids=lambda b: b.__name__,
)
def test_clear_error_check_rejects_lenient_mutant(builder, device):
    names = next(names for b, names, _ in CASES if b is builder)
    with pytest.raises(AssertionError):
        check_clear_error(lambda: builder(device, mut.lenient_attention), names)
