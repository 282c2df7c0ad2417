"""Model level: layers, stacks, the encoder-decoder and the decoder-only LM, KV caches, padding, sizes.

Each contract is a ``check_*`` function; the reference must pass it and a planted-bug mutant from
``mutants_models`` must fail the very same function. Equivalence checks run the models in float64 and
compare through ``reference.tolerance.assert_close`` (the one tolerance policy).
"""

import dataclasses
from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from tests.reference import mutants_models as mut
from transformer_conformance.reference.cache import LayerKVCache
from transformer_conformance.reference.checking import ReferenceInputError
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.decoder import DecoderLayer, DecoderOnlyLayer, DecoderOnlyStack
from transformer_conformance.reference.embedding import OutputProjection, TokenEmbedding
from transformer_conformance.reference.encoder import Encoder, EncoderLayer
from transformer_conformance.reference.masks import causal_mask, padding_mask_from_lengths
from transformer_conformance.reference.model import DecoderOnlyLM, EncoderDecoder
from transformer_conformance.reference.multihead import split_heads
from transformer_conformance.reference.tolerance import assert_close, assert_differs

DT = torch.float64
# The ``device`` fixture is an immutable parameter, safe to share across hypothesis examples.
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# Token-by-token checks run the model once per position: a third of the profile's examples (never more).
costly = settings(
    fixture_ok, max_examples=max(2, settings.default.max_examples // 3) if settings.default else 3
)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
VARIANTS: dict[str, dict[str, object]] = {
    "post-sinusoidal": {},
    "pre-learned": {"norm_placement": "pre", "positional": "learned"},
    "post-concatenated-tied-gelu": {
        "layout": "concatenated",
        "tie_embeddings": True,
        "scale_embedding": True,
        "activation": "gelu",
    },
}
variants = st.sampled_from(sorted(VARIANTS))
_BUILT: dict[tuple[str, str, str], nn.Module] = {}


def build(cls: type, device: torch.device | str, variant: str = "post-sinusoidal", seed: int = 0, **extra):
    """A fresh float64 model in eval mode (``cls`` may be a mutant subclass)."""
    torch.manual_seed(seed)
    config = TransformerConfig.tiny(**VARIANTS[variant], **extra)  # type: ignore[arg-type]
    return cls(config).to(device=device, dtype=DT).eval()


def shared(cls: type, device: torch.device, variant: str = "post-sinusoidal"):
    """A reference model built once per (class, device, variant); tests only read it."""
    key = (cls.__name__, str(device), variant)
    if key not in _BUILT:
        _BUILT[key] = build(cls, device, variant)
    return _BUILT[key]


def rand_ids(seed: int, shape: Sequence[int], device: torch.device | str, vocab: int = 23) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, tuple(shape), generator=g).to(device)


def rand_pad(seed: int, batch: int, length: int, side: str, device: torch.device | str) -> Tensor:
    """Padding mask with 1..length real tokens per sample; sample 0 always has padding when length > 1."""
    g = torch.Generator().manual_seed(seed + 1)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    lengths[0] = max(1, length - 1)
    return padding_mask_from_lengths(lengths, length, side=side).to(device)  # type: ignore[arg-type]


def chunk_sizes(total: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    sizes, left = [], total
    while left:
        c = int(torch.randint(1, left + 1, (1,), generator=g))
        sizes.append(c)
        left -= c
    return sizes


# ---------------------------------------------------------------- sequential forms of the two models


def lm_recompute(model, ids: Tensor, pad: Tensor | None = None) -> Tensor:
    """Token by token without a cache: the last logits of every prefix."""
    rows = [
        model(ids[:, : i + 1], None if pad is None else pad[:, : i + 1])[:, -1] for i in range(ids.shape[1])
    ]
    return torch.stack(rows, dim=1)


def lm_cached(model, ids: Tensor, chunks: Sequence[int] | None = None, pad: Tensor | None = None) -> Tensor:
    """Through ``step`` on one cache, in ``chunks`` (default: one token at a time)."""
    chunks = chunks or [1] * ids.shape[1]
    cache, outs, start = model.new_cache(ids.shape[0]), [], 0
    for c in chunks:
        chunk_pad = None if pad is None else pad[:, start : start + c]
        outs.append(model.step(ids[:, start : start + c], cache, chunk_pad))
        start += c
    return torch.cat(outs, dim=1)


def encdec_recompute(model, src: Tensor, tgt: Tensor) -> Tensor:
    memory = model.encode(src)
    return torch.stack([model.decode(tgt[:, : i + 1], memory)[:, -1] for i in range(tgt.shape[1])], dim=1)


def encdec_cached(model, src: Tensor, tgt: Tensor, chunks: Sequence[int] | None = None) -> Tensor:
    memory = model.encode(src)
    chunks = chunks or [1] * tgt.shape[1]
    cache, outs, start = model.new_cache(src.shape[0]), [], 0
    for c in chunks:
        outs.append(model.step(tgt[:, start : start + c], memory, cache))
        start += c
    return torch.cat(outs, dim=1)


# ---------------------------------------------------------------- checks: teacher forcing and caches


def check_lm_parallel_equals_sequential(model, ids: Tensor) -> None:
    """Teacher-forced logits == token-by-token logits, recomputed and through the cache."""
    full = model(ids)
    assert_close(lm_recompute(model, ids), full, "token by token, no cache")
    assert_close(lm_cached(model, ids), full, "token by token, cached")


def check_encdec_parallel_equals_sequential(model, src: Tensor, tgt: Tensor) -> None:
    full = model(src, tgt)
    assert_close(encdec_recompute(model, src, tgt), full, "token by token, no cache")
    assert_close(encdec_cached(model, src, tgt), full, "token by token, cached")


def check_lm_cache_equals_recompute(model, ids: Tensor, pad: Tensor | None = None) -> None:
    assert_close(lm_cached(model, ids, pad=pad), lm_recompute(model, ids, pad), "cached steps vs recompute")


def check_encdec_cache_equals_recompute(model, src: Tensor, tgt: Tensor) -> None:
    assert_close(
        encdec_cached(model, src, tgt), encdec_recompute(model, src, tgt), "cached steps vs recompute"
    )


def check_lm_chunked_prefill(model, ids: Tensor, chunks: Sequence[int], pad: Tensor | None = None) -> None:
    assert_close(lm_cached(model, ids, chunks, pad), model(ids, pad), f"chunks {list(chunks)} vs one pass")


def check_encdec_chunked_prefill(model, src: Tensor, tgt: Tensor, chunks: Sequence[int]) -> None:
    assert_close(
        encdec_cached(model, src, tgt, chunks), model(src, tgt), f"chunks {list(chunks)} vs one pass"
    )


def check_cross_computed_once(model, src: Tensor, tgt: Tensor) -> None:
    """Every layer projects the memory to K/V exactly once; later steps reuse the very same tensors."""
    calls: dict[str, int] = {}
    handles = []
    for i, layer in enumerate(model.decoder.layers):
        for name in ("w_k", "w_v"):
            key = f"layer {i} cross {name}"
            calls[key] = 0

            def count(module, args, key=key):
                calls[key] += 1

            handles.append(getattr(layer.cross_attn, name).register_forward_pre_hook(count))
    try:
        memory = model.encode(src)
        cache = model.new_cache(src.shape[0])
        first = None
        outs = []
        for t in range(tgt.shape[1]):
            outs.append(model.step(tgt[:, t : t + 1], memory, cache))
            kv = list(cache.cross_attn)
            assert all(pair is not None for pair in kv), "cross-attention K/V not kept in the cache"
            if first is None:
                first = kv
            for i, (now, then) in enumerate(zip(kv, first)):
                assert now is then and now[0] is then[0] and now[1] is then[1], (
                    f"layer {i} K/V replaced at step {t}"
                )
    finally:
        for h in handles:
            h.remove()
    assert all(n == 1 for n in calls.values()), f"memory projections per layer: {calls}"
    assert_close(torch.cat(outs, dim=1), model(src, tgt), "cached steps vs one pass")


def check_only_kv(model, ids: Tensor, chunks: Sequence[int]) -> None:
    """The cache holds K and V only; each step projects queries for its new tokens only (never the past)."""
    assert [f.name for f in dataclasses.fields(LayerKVCache)] == ["k", "v"]
    rows: list[int] = []
    handles = [
        layer.self_attn.w_q.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[1]))
        for layer in model.decoder.layers
    ]
    try:
        cache, start, outs = model.new_cache(ids.shape[0]), 0, []
        for c in chunks:
            rows.clear()
            outs.append(model.step(ids[:, start : start + c], cache))
            start += c
            assert rows and all(r == c for r in rows), f"query rows projected in a {c}-token step: {rows}"
            for layer_cache in cache.self_attn:
                assert layer_cache.k is not None and layer_cache.v is not None
                expected = (ids.shape[0], model.config.num_heads, start, model.config.d_head)
                assert tuple(layer_cache.k.shape) == expected and tuple(layer_cache.v.shape) == expected
    finally:
        for h in handles:
            h.remove()
    assert_close(torch.cat(outs, dim=1), model(ids), "cached steps vs one pass")


@pytest.mark.claim("training.parallel-equals-sequential", "kvcache.equals-recompute")
@costly
@given(seed=seeds, batch=st.integers(1, 2), length=st.integers(1, 5), variant=variants)
def test_lm_parallel_equals_sequential(seed, batch, length, variant, device):
    check_lm_parallel_equals_sequential(
        shared(DecoderOnlyLM, device, variant), rand_ids(seed, (batch, length), device)
    )


@pytest.mark.claim(
    "training.parallel-equals-sequential", "encdec.teacher-forcing", "kvcache.equals-recompute"
)
@costly
@given(seed=seeds, batch=st.integers(1, 2), s=st.integers(1, 5), t=st.integers(1, 5), variant=variants)
def test_encdec_parallel_equals_sequential(seed, batch, s, t, variant, device):
    model = shared(EncoderDecoder, device, variant)
    src, tgt = rand_ids(seed, (batch, s), device), rand_ids(seed + 7, (batch, t), device)
    check_encdec_parallel_equals_sequential(model, src, tgt)


@pytest.mark.claim(
    "training.parallel-equals-sequential", "encdec.teacher-forcing", "mask.causal.future-blind"
)
def test_parallel_equals_sequential_rejects_missing_causal_mask(device):
    lm = build(DecoderOnlyLM, device)
    mut.swap_layer_class(lm.decoder, mut.NoCausalDecoderOnlyLayer)
    with pytest.raises(AssertionError):
        check_lm_parallel_equals_sequential(lm, rand_ids(1, (2, 5), device))
    ed = build(EncoderDecoder, device)
    mut.swap_layer_class(ed.decoder, mut.NoCausalDecoderLayer)
    with pytest.raises(AssertionError):
        check_encdec_parallel_equals_sequential(ed, rand_ids(1, (2, 4), device), rand_ids(2, (2, 5), device))


def check_lm_cache_with_padding(model, ids: Tensor, pad: Tensor) -> None:
    """Cached token-by-token steps with a padding mask == one padded pass (the cache keeps the padding)."""
    assert_close(lm_cached(model, ids, pad=pad), model(ids, pad), "padded cached steps vs one pass")


def check_encdec_cache_with_padding(model, src, src_pad, tgt, tgt_pad) -> None:
    """Encoder-decoder steps with source and target padding == one padded pass."""
    memory = model.encode(src, src_pad)
    cache, outs = model.new_cache(src.shape[0]), []
    for t in range(tgt.shape[1]):
        outs.append(model.step(tgt[:, t : t + 1], memory, cache, src_pad, tgt_pad[:, t : t + 1]))
    assert_close(torch.cat(outs, dim=1), model(src, tgt, src_pad, tgt_pad), "padded cached steps vs one pass")


@pytest.mark.claim("kvcache.equals-recompute", "mask.padding.invariance")
@costly
@given(seed=seeds, batch=st.integers(1, 3), length=st.integers(2, 5), side=st.sampled_from(["left", "right"]))
def test_cache_with_padding_equals_one_pass(seed, batch, length, side, device):
    ids, pad = rand_ids(seed, (batch, length), device), rand_pad(seed, batch, length, side, device)
    check_lm_cache_with_padding(shared(DecoderOnlyLM, device), ids, pad)
    src, src_pad = rand_ids(seed + 1, (batch, 4), device), rand_pad(seed + 2, batch, 4, "right", device)
    check_encdec_cache_with_padding(shared(EncoderDecoder, device, "pre-learned"), src, src_pad, ids, pad)


@pytest.mark.claim("kvcache.equals-recompute", "mask.padding.invariance")
def test_cache_padding_check_rejects_ignored_padding(device):
    ids, pad = rand_ids(1, (2, 5), device), rand_pad(1, 2, 5, "left", device)
    with pytest.raises(AssertionError):
        check_lm_cache_with_padding(build(mut.IgnoresPaddingLM, device), ids, pad)


@pytest.mark.claim("kvcache.equals-recompute")
def test_cache_check_rejects_wrong_position_offset(device):
    with pytest.raises(AssertionError):
        check_lm_cache_equals_recompute(build(mut.OffsetBugLM, device), rand_ids(3, (2, 5), device))
    with pytest.raises(AssertionError):
        check_encdec_cache_equals_recompute(
            build(mut.OffsetBugEncDec, device), rand_ids(3, (2, 4), device), rand_ids(4, (2, 5), device)
        )


@pytest.mark.claim("kvcache.chunked-prefill", "mask.causal.alignment")
@costly
@given(seed=seeds, batch=st.integers(1, 2), length=st.integers(2, 7), variant=variants, padded=st.booleans())
def test_chunked_prefill(seed, batch, length, variant, padded, device):
    lm = shared(DecoderOnlyLM, device, variant)
    ids = rand_ids(seed, (batch, length), device)
    pad = rand_pad(seed, batch, length, "left", device) if padded else None
    check_lm_chunked_prefill(lm, ids, chunk_sizes(length, seed), pad)
    ed = shared(EncoderDecoder, device, variant)
    check_encdec_chunked_prefill(
        ed, rand_ids(seed + 5, (batch, 3), device), ids, chunk_sizes(length, seed + 1)
    )


@pytest.mark.claim("kvcache.chunked-prefill")
@pytest.mark.parametrize("layer_cls", [mut.PrefixBlindChunkLayer, mut.CachedPathNoCausalLayer])
def test_chunked_prefill_check_rejects_mutants(layer_cls, device):
    lm = build(DecoderOnlyLM, device)
    mut.swap_layer_class(lm.decoder, layer_cls)
    ids = rand_ids(5, (2, 7), device)
    check_lm_cache_equals_recompute(lm, ids)  # single-token steps are right: only chunks reveal the bug
    with pytest.raises(AssertionError):
        check_lm_chunked_prefill(lm, ids, [2, 3, 2])


@pytest.mark.claim("kvcache.cross-computed-once")
@costly
@given(seed=seeds, batch=st.integers(1, 2), s=st.integers(1, 5), t=st.integers(2, 4), variant=variants)
def test_cross_attention_kv_computed_once(seed, batch, s, t, variant, device):
    model = shared(EncoderDecoder, device, variant)
    check_cross_computed_once(
        model, rand_ids(seed, (batch, s), device), rand_ids(seed + 1, (batch, t), device)
    )


@pytest.mark.claim("kvcache.cross-computed-once")
def test_cross_computed_once_check_rejects_recomputation(device):
    model = build(EncoderDecoder, device)
    mut.swap_layer_class(model.decoder, mut.RecomputeCrossLayer)
    with pytest.raises(AssertionError):
        check_cross_computed_once(model, rand_ids(1, (2, 4), device), rand_ids(2, (2, 3), device))


@pytest.mark.claim("kvcache.only-kv")
@costly
@given(seed=seeds, batch=st.integers(1, 2), length=st.integers(1, 6), variant=variants)
def test_cache_holds_only_keys_and_values(seed, batch, length, variant, device):
    check_only_kv(
        shared(DecoderOnlyLM, device, variant),
        rand_ids(seed, (batch, length), device),
        chunk_sizes(length, seed),
    )


@pytest.mark.claim("kvcache.only-kv")
def test_only_kv_check_rejects_recomputing_past_queries(device):
    with pytest.raises(AssertionError):
        check_only_kv(build(mut.RecomputeLM, device), rand_ids(2, (2, 5), device), [2, 1, 2])


# ---------------------------------------------------------------- checks: masking, padding, batches


def check_lm_future_blind(model, ids: Tensor, i: int, replacement: Tensor) -> None:
    """Logits at positions <= i are unchanged when every token after i changes."""
    changed = ids.clone()
    changed[:, i + 1 :] = replacement[:, i + 1 :]
    assert_close(model(changed)[:, : i + 1], model(ids)[:, : i + 1], f"positions <= {i}")


def check_encdec_future_blind(model, src: Tensor, tgt: Tensor, i: int, replacement: Tensor) -> None:
    memory = model.encode(src)
    changed = tgt.clone()
    changed[:, i + 1 :] = replacement[:, i + 1 :]
    assert_close(
        model.decode(changed, memory)[:, : i + 1], model.decode(tgt, memory)[:, : i + 1], f"positions <= {i}"
    )


@pytest.mark.claim("mask.causal.future-blind")
@fixture_ok
@given(seed=seeds, length=st.integers(2, 6), data=st.data(), variant=variants)
def test_future_blind_at_model_level(seed, length, data, variant, device):
    i = data.draw(st.integers(0, length - 2))
    ids, other = rand_ids(seed, (2, length), device), rand_ids(seed + 1, (2, length), device)
    check_lm_future_blind(shared(DecoderOnlyLM, device, variant), ids, i, other)
    ed = shared(EncoderDecoder, device, variant)
    check_encdec_future_blind(ed, rand_ids(seed + 2, (2, 5), device), ids, i, other)


@pytest.mark.claim("mask.causal.future-blind")
def test_future_blind_check_rejects_missing_causal_mask(device):
    lm = build(DecoderOnlyLM, device)
    mut.swap_layer_class(lm.decoder, mut.NoCausalDecoderOnlyLayer)
    with pytest.raises(AssertionError):
        check_lm_future_blind(lm, rand_ids(1, (2, 6), device), 2, rand_ids(2, (2, 6), device))
    ed = build(EncoderDecoder, device)
    mut.swap_layer_class(ed.decoder, mut.NoCausalDecoderLayer)
    with pytest.raises(AssertionError):
        check_encdec_future_blind(
            ed, rand_ids(3, (2, 4), device), rand_ids(1, (2, 6), device), 2, rand_ids(2, (2, 6), device)
        )


def check_lm_padding_invariance(model, ids: Tensor, pad: Tensor, new_pad_ids: Tensor) -> None:
    """Changing the ids under the padding changes no logit at a real position."""
    changed = torch.where(pad, ids, new_pad_ids)
    assert not torch.equal(changed, ids) or bool(pad.all()), "test input: the pad ids must change"
    a, b = model(ids, pad), model(changed, pad)
    assert_close(b[pad], a[pad], "logits at real positions")


def check_encdec_padding_invariance(model, src, src_pad, tgt, tgt_pad, new_src_ids, new_tgt_ids) -> None:
    src2 = torch.where(src_pad, src, new_src_ids)
    tgt2 = torch.where(tgt_pad, tgt, new_tgt_ids)
    a = model(src, tgt, src_pad, tgt_pad)
    b = model(src2, tgt2, src_pad, tgt_pad)
    assert_close(b[tgt_pad], a[tgt_pad], "logits at real target positions")


@pytest.mark.claim("mask.padding.invariance", "mask.padding.pad-value-arbitrary")
@fixture_ok
@given(
    seed=seeds,
    batch=st.integers(1, 3),
    length=st.integers(2, 8),
    side=st.sampled_from(["left", "right"]),
    variant=variants,
)
def test_padding_invariance_at_model_level(seed, batch, length, side, variant, device):
    ids, pad = rand_ids(seed, (batch, length), device), rand_pad(seed, batch, length, side, device)
    new_ids = (
        ids + 1 + rand_ids(seed + 9, (batch, length), device, vocab=21)
    ) % 23  # differs from ids everywhere
    check_lm_padding_invariance(shared(DecoderOnlyLM, device, variant), ids, pad, new_ids)
    src_pad = rand_pad(seed + 2, batch, 5, side, device)
    src = rand_ids(seed + 3, (batch, 5), device)
    new_src = (src + 1 + rand_ids(seed + 4, (batch, 5), device, vocab=21)) % 23
    model = shared(EncoderDecoder, device, variant)
    check_encdec_padding_invariance(model, src, src_pad, ids, pad, new_src, new_ids)


@pytest.mark.claim("mask.padding.invariance")
def test_padding_invariance_check_rejects_ignored_padding(device):
    ids, pad = rand_ids(1, (2, 6), device), rand_pad(1, 2, 6, "left", device)
    new_ids = (ids + 5) % 23
    with pytest.raises(AssertionError):
        check_lm_padding_invariance(build(mut.IgnoresPaddingLM, device), ids, pad, new_ids)
    src, src_pad = rand_ids(2, (2, 5), device), rand_pad(2, 2, 5, "right", device)
    with pytest.raises(AssertionError):
        check_encdec_padding_invariance(
            build(mut.IgnoresSourcePaddingEncDec, device), src, src_pad, ids, pad, (src + 5) % 23, new_ids
        )


@pytest.mark.claim("mask.padding.invariance")
def test_left_and_right_padding_are_not_expected_to_agree(device):
    """Positions are absolute slots: the same sentence left- and right-padded gets different positions."""
    lm = shared(DecoderOnlyLM, device)
    sentence = rand_ids(4, (1, 4), device)
    right = torch.cat([sentence, torch.zeros_like(sentence[:, :2])], dim=1)
    left = torch.cat([torch.zeros_like(sentence[:, :2]), sentence], dim=1)
    right_pad = padding_mask_from_lengths(torch.tensor([4]), 6, side="right").to(device)
    left_pad = padding_mask_from_lengths(torch.tensor([4]), 6, side="left").to(device)
    a, b = lm(right, right_pad)[right_pad], lm(left, left_pad)[left_pad]
    assert_differs(a, b, "left vs right padded logits")  # documented: not equal (different positions)


def check_lm_batch_independence(model, ids: Tensor, pad: Tensor) -> None:
    """Each sample's logits in the batch equal its logits computed alone."""
    together = model(ids, pad)
    for b in range(ids.shape[0]):
        alone = model(ids[b : b + 1], pad[b : b + 1])
        assert_close(together[b : b + 1], alone, f"sample {b}")


def check_encdec_batch_independence(model, src, src_pad, tgt, tgt_pad) -> None:
    together = model(src, tgt, src_pad, tgt_pad)
    for b in range(src.shape[0]):
        alone = model(src[b : b + 1], tgt[b : b + 1], src_pad[b : b + 1], tgt_pad[b : b + 1])
        assert_close(together[b : b + 1], alone, f"sample {b}")


@pytest.mark.claim("batch.independence")
@fixture_ok
@given(
    seed=seeds,
    batch=st.integers(2, 4),
    length=st.integers(2, 7),
    side=st.sampled_from(["left", "right"]),
    variant=variants,
)
def test_batch_independence(seed, batch, length, side, variant, device):
    ids, pad = rand_ids(seed, (batch, length), device), rand_pad(seed, batch, length, side, device)
    check_lm_batch_independence(shared(DecoderOnlyLM, device, variant), ids, pad)
    src, src_pad = rand_ids(seed + 1, (batch, 5), device), rand_pad(seed + 2, batch, 5, side, device)
    check_encdec_batch_independence(shared(EncoderDecoder, device, variant), src, src_pad, ids, pad)


@pytest.mark.claim("batch.independence")
def test_batch_independence_check_rejects_padding_leak(device):
    ids = rand_ids(1, (2, 6), device)
    pad = torch.ones(2, 6, dtype=torch.bool, device=device)
    pad[0, :2] = False  # sample 0 is left-padded, sample 1 is not
    with pytest.raises(AssertionError):
        check_lm_batch_independence(build(mut.PaddingLeakLM, device), ids, pad)


def check_determinism_eval(model, ids: Tensor) -> None:
    model.eval()
    first, second = model(ids), model(ids)
    assert torch.equal(first, second), "eval-mode outputs differ between two identical calls"


@pytest.mark.claim("determinism.eval")
def test_determinism_in_eval_and_dropout_in_train(device):
    lm = build(DecoderOnlyLM, device, dropout=0.3)
    ids = rand_ids(1, (2, 6), device)
    check_determinism_eval(lm, ids)
    ed = build(EncoderDecoder, device, dropout=0.3)
    first = ed(ids, ids)
    assert torch.equal(first, ed(ids, ids))
    lm.train()
    torch.manual_seed(0)
    a = lm(ids)
    b = lm(ids)
    assert not torch.equal(a, b), "train mode with dropout 0.3 should differ between calls"
    lm.eval()
    assert torch.equal(lm(ids), lm(ids))


@pytest.mark.claim("determinism.eval")
def test_determinism_check_rejects_dropout_left_on(device):
    lm = mut.with_dropout_always_on(build(DecoderOnlyLM, device, dropout=0.3))
    with pytest.raises(AssertionError):
        check_determinism_eval(lm, rand_ids(1, (2, 6), device))


# ---------------------------------------------------------------- checks: encoder, memory, decoder wiring


def check_encoder_output_per_position(model, src: Tensor) -> None:
    """n source positions -> n memory vectors of width d_model, one per position (not one summary)."""
    memory = model.encode(src)
    b, n = src.shape
    assert tuple(memory.shape) == (b, n, model.config.d_model), tuple(memory.shape)
    if n > 1:
        for row in memory:  # per sample: the positions are not all one vector
            average = row.mean(dim=0, keepdim=True).expand_as(row)
            assert_differs(row, average, "memory vectors across positions")


@pytest.mark.claim("encoder.output-per-position")
@fixture_ok
@given(seed=seeds, batch=st.integers(1, 3), n=st.integers(1, 9), variant=variants)
def test_encoder_output_per_position(seed, batch, n, variant, device):
    check_encoder_output_per_position(
        shared(EncoderDecoder, device, variant), rand_ids(seed, (batch, n), device)
    )


@pytest.mark.claim("encoder.output-per-position")
def test_encoder_output_check_rejects_pooling(device):
    model = build(EncoderDecoder, device)
    model.encoder.__class__ = mut.PooledEncoder
    with pytest.raises(AssertionError):
        check_encoder_output_per_position(model, rand_ids(1, (2, 5), device))


def manual_memory(model, src: Tensor, src_pad: Tensor | None = None) -> Tensor:
    """Chain the encoder layers by hand: each layer's output is the next one's input."""
    h = model.embed_source(src)
    for layer in model.encoder.layers:
        h = layer(h, src_pad)
    if model.config.norm_placement == "pre":
        h = F.layer_norm(
            h,
            (h.shape[-1],),
            model.encoder.final_norm.weight,
            model.encoder.final_norm.bias,
            model.config.eps,
        )
    return h


def check_encoder_stack(model, src: Tensor) -> None:
    layers = list(model.encoder.layers)
    assert len(layers) == model.config.num_layers
    shapes = [[tuple(p.shape) for p in layer.parameters()] for layer in layers]
    assert all(s == shapes[0] for s in shapes), "layers are not identical in structure"
    ptrs = [{p.data_ptr() for p in layer.parameters()} for layer in layers]
    assert all(not (ptrs[i] & ptrs[j]) for i in range(len(ptrs)) for j in range(i)), "layers share weights"
    assert_close(model.encode(src), manual_memory(model, src), "encode vs chained layers")


@pytest.mark.claim("encoder.stack")
@fixture_ok
@given(seed=seeds, n=st.integers(1, 7), variant=variants, layers=st.integers(1, 3))
def test_encoder_stack(seed, n, variant, layers, device):
    model = build(EncoderDecoder, device, variant, seed=seed % 7, num_layers=layers)
    check_encoder_stack(model, rand_ids(seed, (2, n), device))


@pytest.mark.claim("encoder.stack", "sizes.base")
def test_base_config_has_six_layers_in_each_stack():
    config = TransformerConfig()
    assert config.num_layers == 6
    model = EncoderDecoder(TransformerConfig(vocab_size=11, d_model=8, num_heads=2, d_ff=16))
    assert len(model.encoder.layers) == 6 and len(model.decoder.layers) == 6


@pytest.mark.claim("encoder.stack")
def test_encoder_stack_check_rejects_unchained_layers(device):
    model = build(EncoderDecoder, device)
    model.encoder.__class__ = mut.UnchainedEncoder
    with pytest.raises(AssertionError):
        check_encoder_stack(model, rand_ids(1, (2, 5), device))


def captured_cross_inputs(model, run: Callable[[], object]) -> list[tuple[Tensor, Tensor]]:
    """(x_q, x_kv) passed to every decoder layer's cross-attention during ``run()``."""
    seen: list[tuple[Tensor, Tensor]] = []
    handles = [
        layer.cross_attn.register_forward_pre_hook(lambda m, args: seen.append((args[0], args[1])))
        for layer in model.decoder.layers
    ]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return seen


def check_memory_from_last_layer(model, src: Tensor, tgt: Tensor) -> None:
    """Every decoder layer's cross-attention reads the final encoder layer's output."""
    expected = manual_memory(model, src)
    seen = captured_cross_inputs(model, lambda: model(src, tgt))
    assert len(seen) == model.config.num_layers
    for i, (_, memory) in enumerate(seen):
        assert_close(memory, expected, f"memory read by decoder layer {i}")


@pytest.mark.claim("encdec.memory-from-last-layer")
@fixture_ok
@given(seed=seeds, s=st.integers(1, 6), t=st.integers(1, 6), variant=variants)
def test_memory_from_last_encoder_layer(seed, s, t, variant, device):
    model = shared(EncoderDecoder, device, variant)
    check_memory_from_last_layer(model, rand_ids(seed, (2, s), device), rand_ids(seed + 1, (2, t), device))


@pytest.mark.claim("encdec.memory-from-last-layer")
def test_memory_check_rejects_first_layer_memory(device):
    with pytest.raises(AssertionError):
        check_memory_from_last_layer(
            build(mut.FirstLayerMemoryEncDec, device),
            rand_ids(1, (2, 5), device),
            rand_ids(2, (2, 3), device),
        )


def check_encoder_outputs_hidden_states(model, src: Tensor, tgt: Tensor) -> None:
    """The encoder emits hidden states; each decoder layer projects its own K/V from them."""
    memory = model.encode(src)
    assert isinstance(memory, Tensor) and tuple(memory.shape) == (*src.shape, model.config.d_model)
    cache = model.new_cache(src.shape[0])
    model.step(tgt[:, :1], memory, cache)
    pairs = []
    for i, layer in enumerate(model.decoder.layers):
        kv = cache.cross_attn[i]
        assert kv is not None, f"layer {i} has no cross-attention K/V of its own"
        own_k = layer.cross_attn.project_heads(layer.cross_attn.w_k, memory)
        own_v = layer.cross_attn.project_heads(layer.cross_attn.w_v, memory)
        assert_close(kv[0], own_k, f"layer {i} K")
        assert_close(kv[1], own_v, f"layer {i} V")
        pairs.append(kv)
    for i in range(1, len(pairs)):
        # one K shared by all layers would mean the encoder emits K/V
        assert_differs(pairs[i][0], pairs[0][0], f"K of layers 0 and {i}")
    # and no layer's K or V is the encoder output itself (split into heads like them)
    as_heads = split_heads(memory, model.config.num_heads)
    for i, (k, v) in enumerate(pairs):
        assert_differs(k, as_heads, f"layer {i} K vs the memory")
        assert_differs(v, as_heads, f"layer {i} V vs the memory")


@pytest.mark.claim("encdec.encoder-outputs-kv")
@fixture_ok
@given(seed=seeds, s=st.integers(1, 6), variant=variants)
def test_encoder_outputs_hidden_states_and_layers_project_kv(seed, s, variant, device):
    model = shared(EncoderDecoder, device, variant)
    check_encoder_outputs_hidden_states(
        model, rand_ids(seed, (2, s), device), rand_ids(seed + 1, (2, 3), device)
    )


@pytest.mark.claim("encdec.encoder-outputs-kv")
def test_encoder_outputs_kv_check_rejects_shared_kv(device):
    model = build(EncoderDecoder, device)
    mut.swap_layer_class(model.decoder, mut.SharedCrossKVLayer)
    with pytest.raises(AssertionError):
        check_encoder_outputs_hidden_states(model, rand_ids(1, (2, 4), device), rand_ids(2, (2, 3), device))


def kv_per_layer(stack, x: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """The stack's output and every layer's self-attention K and V projections ``[b, l, d_model]``."""
    kv: list[list[Tensor]] = [[] for _ in stack.layers]
    handles = [
        getattr(layer.self_attn, name).register_forward_hook(lambda m, a, out, i=i: kv[i].append(out))
        for i, layer in enumerate(stack.layers)
        for name in ("w_k", "w_v")
    ]
    try:
        out = stack(x)
    finally:
        for h in handles:
            h.remove()
    return out, [(k, v) for k, v in kv]


def check_append_keeps_the_past(stack, x: Tensor, extra: Tensor) -> None:
    """Appending tokens leaves every earlier output and every layer's earlier K and V unchanged: what
    was kept for positions < n is still exact."""
    n = x.shape[1]
    with torch.no_grad():
        short, kv_short = kv_per_layer(stack, x)
        long, kv_long = kv_per_layer(stack, torch.cat([x, extra], dim=1))
    assert_close(long[:, :n], short, "outputs of the earlier positions after appending")
    for i, ((k, v), (k_long, v_long)) in enumerate(zip(kv_short, kv_long)):
        assert_close(k_long[:, :n], k, f"layer {i} K of the earlier positions after appending")
        assert_close(v_long[:, :n], v, f"layer {i} V of the earlier positions after appending")


@pytest.mark.claim("kvcache.self-attention-reuse-as-stated", "kvcache.equals-recompute")
@fixture_ok
@given(seed=seeds, n=st.integers(1, 5), extra=st.integers(1, 3), variant=variants)
def test_kept_kv_are_exact_for_causal_and_stale_for_the_encoder(seed, n, extra, variant, device):
    g = torch.Generator().manual_seed(seed)
    x, more = (torch.randn(2, m, 16, generator=g, dtype=DT).to(device) for m in (n, extra))
    check_append_keeps_the_past(build(DecoderOnlyStack, device, variant, seed % 5), x, more)
    # The condition: the bidirectional encoder of N3's passage does not qualify.
    encoder = build(Encoder, device, variant, seed % 5)
    with pytest.raises(AssertionError, match="earlier positions"):
        check_append_keeps_the_past(encoder, x, more)
    with torch.no_grad():
        _, kv_short = kv_per_layer(encoder, x)
        _, kv_long = kv_per_layer(encoder, torch.cat([x, more], dim=1))
    assert_close(kv_long[0][0][:, :n], kv_short[0][0], "layer 0 K (a projection of the input alone)")
    assert_differs(kv_long[1][0][:, :n], kv_short[1][0], "layer 1 K of the earlier positions")


@pytest.mark.claim("kvcache.self-attention-reuse-as-stated")
def test_append_check_rejects_non_causal_decoder(device):
    stack = build(DecoderOnlyStack, device)
    mut.swap_layer_class(stack, mut.NoCausalDecoderOnlyLayer)
    x, more = torch.randn(2, 3, 16, dtype=DT, device=device), torch.randn(2, 2, 16, dtype=DT, device=device)
    with pytest.raises(AssertionError, match="earlier positions"):
        check_append_keeps_the_past(stack, x, more)


def check_decoder_block_is_causal_encoder_layer(block, x: Tensor) -> None:
    """A decoder-only block has an encoder layer's parameters and no cross-attention; with the same weights
    its output at i equals the encoder layer's output at i on the prefix 0..i, and on the whole sequence
    the two differ before the last position (the causal mask is the only difference)."""
    encoder_layer = EncoderLayer(block.config).to(device=x.device, dtype=x.dtype).eval()
    encoder_layer.load_state_dict(block.state_dict())  # strict: the same parameter names and shapes
    assert not hasattr(block, "cross_attn"), "a GPT-style block has no cross-attention"
    n = x.shape[1]
    with torch.no_grad():
        out = block(x)
        for i in range(n):
            prefix = encoder_layer(x[:, : i + 1])[:, i]
            assert_close(out[:, i], prefix, f"block output {i} vs an encoder layer on the prefix 0..{i}")
        if n > 1:
            assert_differs(encoder_layer(x)[:, :-1], out[:, :-1], "encoder layer on the whole sequence")


@pytest.mark.claim("decoder.gpt2-encoder-stack-as-stated", "decoder.stack")
@fixture_ok
@given(seed=seeds, n=st.integers(1, 5), variant=variants)
def test_gpt_block_is_an_encoder_layer_with_a_causal_mask(seed, n, variant, device):
    block = build(DecoderOnlyLayer, device, variant, seed % 5)
    x = torch.randn(2, n, 16, generator=torch.Generator().manual_seed(seed), dtype=DT).to(device)
    check_decoder_block_is_causal_encoder_layer(block, x)


@pytest.mark.claim("decoder.gpt2-encoder-stack-as-stated")
def test_gpt_block_check_rejects_non_causal_block(device):
    block = build(mut.NoCausalDecoderOnlyLayer, device)
    with pytest.raises(AssertionError, match="on the prefix"):
        check_decoder_block_is_causal_encoder_layer(block, torch.randn(2, 4, 16, dtype=DT, device=device))


@pytest.mark.claim("encdec.encoder-stack-as-stated", "sizes.base")
def test_the_transformer_is_not_only_an_encoder_stack(device):
    assert TransformerConfig().num_layers == 6
    model = build(EncoderDecoder, device, num_layers=6)
    assert len(model.encoder.layers) == 6 and all(type(m) is EncoderLayer for m in model.encoder.layers)
    assert len(model.decoder.layers) == 6 and all(type(m) is DecoderLayer for m in model.decoder.layers)
    assert all(isinstance(m.cross_attn, nn.Module) for m in model.decoder.layers), "no cross-attention"
    src, tgt = rand_ids(0, (2, 5), device), rand_ids(1, (2, 3), device)
    with torch.no_grad():
        memory = model.encode(src)
        logits = model.decode(tgt, memory)
        other = model.decode(tgt, memory.flip(0))
    # the encoder stack maps s positions to s; only the decoder yields the t target positions
    assert tuple(memory.shape[:2]) == (2, 5) and tuple(logits.shape[:2]) == (2, 3)
    assert_differs(other, logits, "decoder output under another memory (the decoder reads the encoder)")


def layer_outputs(layer, run: Callable[[], object], names: Sequence[str]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    handles = [
        getattr(layer, name).register_forward_hook(
            lambda m, args, result, name=name: out.__setitem__(name, result[0])
        )
        for name in names
    ]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return out


def check_self_attention_ignores_memory(layer, x: Tensor, memory: Tensor, other_memory: Tensor) -> None:
    """Changing the memory leaves the self-attention output unchanged; only cross-attention sees it."""
    a = layer_outputs(layer, lambda: layer(x, memory), ["self_attn", "cross_attn"])
    b = layer_outputs(layer, lambda: layer(x, other_memory), ["self_attn", "cross_attn"])
    assert_close(b["self_attn"], a["self_attn"], "self-attention output under a different memory")
    assert_differs(b["cross_attn"], a["cross_attn"], "cross-attention output under a different memory")


@pytest.mark.claim("decoder.self-attention-sources")
@fixture_ok
@given(seed=seeds, t=st.integers(1, 6), s=st.integers(1, 6), variant=variants)
def test_decoder_self_attention_never_reads_the_memory(seed, t, s, variant, device):
    """Refutes N4's reading: decoder self-attention takes K/V from the decoder stream, not the encoder."""
    torch.manual_seed(seed % 5)
    layer = DecoderLayer(TransformerConfig.tiny(**VARIANTS[variant])).to(device, DT).eval()  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(seed)
    x, m1, m2 = (torch.randn(2, n, 16, generator=g, dtype=DT).to(device) for n in (t, s, s))
    check_self_attention_ignores_memory(layer, x, m1, m2)


@pytest.mark.claim("decoder.self-attention-sources")
def test_self_attention_sources_check_rejects_memory_fed_self_attention(device):
    torch.manual_seed(0)
    layer = mut.MemorySelfAttentionLayer(TransformerConfig.tiny()).to(device, DT).eval()
    x, m1, m2 = (torch.randn(2, 4, 16, dtype=DT, device=device) for _ in range(3))
    with pytest.raises(AssertionError):
        check_self_attention_ignores_memory(layer, x, m1, m2)


def check_cross_sources(layer, x: Tensor, memory: Tensor) -> None:
    """Cross-attention queries come from the decoder stream, keys/values from the memory."""
    seen = layer_inputs_cross(layer, x, memory)
    x_q, x_kv = seen
    assert torch.equal(x_kv, memory), "cross-attention keys/values are not the memory"
    cfg = layer.config
    if cfg.norm_placement == "post":
        causal = causal_mask(x.shape[1], x.shape[1], device=x.device)
        stream = F.layer_norm(
            x + layer.self_attn(x, x, causal)[0],
            (x.shape[-1],),
            layer.norm_1.weight,
            layer.norm_1.bias,
            cfg.eps,
        )
        assert_close(x_q, stream, "cross-attention queries vs the decoder stream after self-attention")
    else:
        assert x_q.shape == x.shape and not torch.equal(x_q, memory)


def layer_inputs_cross(layer, x: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
    seen: list[tuple[Tensor, Tensor]] = []
    handle = layer.cross_attn.register_forward_pre_hook(lambda m, args: seen.append((args[0], args[1])))
    try:
        layer(x, memory)
    finally:
        handle.remove()
    assert len(seen) == 1
    return seen[0]


@pytest.mark.claim("attention.cross.sources")
@fixture_ok
@given(seed=seeds, t=st.integers(1, 6), s=st.integers(1, 6), variant=variants)
def test_cross_attention_sources(seed, t, s, variant, device):
    torch.manual_seed(seed % 5)
    layer = DecoderLayer(TransformerConfig.tiny(**VARIANTS[variant])).to(device, DT).eval()  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(seed)
    check_cross_sources(
        layer,
        torch.randn(2, t, 16, generator=g, dtype=DT).to(device),
        torch.randn(2, s, 16, generator=g, dtype=DT).to(device),
    )


@pytest.mark.claim("attention.cross.sources")
def test_cross_sources_check_rejects_swapped_sources(device):
    torch.manual_seed(0)
    layer = mut.SwappedCrossSourcesLayer(TransformerConfig.tiny()).to(device, DT).eval()
    x, memory = torch.randn(2, 4, 16, dtype=DT, device=device), torch.randn(2, 4, 16, dtype=DT, device=device)
    with pytest.raises(AssertionError):
        check_cross_sources(layer, x, memory)


def check_cross_query_from_own_position(layer, x: Tensor, memory: Tensor) -> None:
    """Changing only the decoder input at position t changes the cross-attention query row t (and no
    earlier row): the query at t is computed from position t, not from the state of step t - 1."""
    base, _ = layer_inputs_cross(layer, x, memory)
    for t in range(x.shape[1]):
        moved = x.clone()
        moved[:, t] += 1.0 + x[:, t].flip(-1)
        x_q, _ = layer_inputs_cross(layer, moved, memory)
        assert_differs(x_q[:, t], base[:, t], f"cross-attention query row {t} after changing input {t}")
        assert_close(x_q[:, :t], base[:, :t], f"query rows before {t} after changing input {t}")


@pytest.mark.claim("attention.cross.query-previous-step-as-stated", "attention.cross.sources")
@fixture_ok
@given(seed=seeds, t=st.integers(1, 5), s=st.integers(1, 4), variant=variants)
def test_cross_attention_query_comes_from_the_same_position(seed, t, s, variant, device):
    torch.manual_seed(seed % 5)
    layer = DecoderLayer(TransformerConfig.tiny(**VARIANTS[variant])).to(device, DT).eval()  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(seed)
    x, memory = (torch.randn(2, n, 16, generator=g, dtype=DT).to(device) for n in (t, s))
    with torch.no_grad():
        check_cross_query_from_own_position(layer, x, memory)


@pytest.mark.claim("attention.cross.query-previous-step-as-stated")
def test_cross_query_check_rejects_previous_step_query(device):
    torch.manual_seed(0)
    layer = mut.PreviousStepQueryLayer(TransformerConfig.tiny()).to(device, DT).eval()
    x, memory = torch.randn(2, 4, 16, dtype=DT, device=device), torch.randn(2, 3, 16, dtype=DT, device=device)
    with torch.no_grad(), pytest.raises(AssertionError, match="query row 0"):
        check_cross_query_from_own_position(layer, x, memory)


def check_cross_no_causal_mask(layer, x: Tensor, memory: Tensor) -> None:
    """Target position 0 sees every memory position: changing the last one changes its output."""
    assert memory.shape[1] > 1
    weights = layer_outputs_weights(layer, x, memory)
    assert bool((weights > 0).all()), "some memory position is hidden from some target position"
    changed = memory.clone()
    changed[:, -1] = changed[:, -1] + 1.0
    after, before = layer(x, changed)[:, 0], layer(x, memory)[:, 0]
    assert_differs(after, before, "position 0 after changing the last memory slot")


def layer_outputs_weights(layer, x: Tensor, memory: Tensor) -> Tensor:
    seen: list[Tensor] = []
    handle = layer.cross_attn.register_forward_hook(lambda m, args, result: seen.append(result[1]))
    try:
        layer(x, memory)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.claim("attention.cross.no-causal-mask")
@fixture_ok
@given(seed=seeds, t=st.integers(1, 6), s=st.integers(2, 7), variant=variants)
def test_cross_attention_has_no_causal_mask(seed, t, s, variant, device):
    torch.manual_seed(seed % 5)
    layer = DecoderLayer(TransformerConfig.tiny(**VARIANTS[variant])).to(device, DT).eval()  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(seed)
    check_cross_no_causal_mask(
        layer,
        torch.randn(2, t, 16, generator=g, dtype=DT).to(device),
        torch.randn(2, s, 16, generator=g, dtype=DT).to(device),
    )


@pytest.mark.claim("attention.cross.no-causal-mask")
def test_cross_no_causal_check_rejects_causal_cross_attention(device):
    torch.manual_seed(0)
    layer = mut.CausalCrossLayer(TransformerConfig.tiny()).to(device, DT).eval()
    with pytest.raises(AssertionError):
        check_cross_no_causal_mask(
            layer,
            torch.randn(2, 3, 16, dtype=DT, device=device),
            torch.randn(2, 5, 16, dtype=DT, device=device),
        )


def check_post_ln_layer(layer, x: Tensor) -> None:
    """EncoderLayer (post) == LN2(h + FFN(h)) with h = LN1(x + MHA(x, x)); pre: x + F(LN(x)) twice."""
    d, eps = x.shape[-1], layer.config.eps

    def ln(norm, v):
        return F.layer_norm(v, (d,), norm.weight, norm.bias, eps)

    def mha(v):
        return layer.self_attn(v, v)[0]

    if layer.config.norm_placement == "post":
        h = ln(layer.norm_1, x + mha(x))
        expected = ln(layer.norm_2, h + layer.ffn(h))
    else:
        h = x + mha(ln(layer.norm_1, x))
        expected = h + layer.ffn(ln(layer.norm_2, h))
    assert_close(layer(x), expected, f"{layer.config.norm_placement}-LN composition")


@pytest.mark.claim("residual.post-ln", "residual.adds-update")
@fixture_ok
@given(seed=seeds, n=st.integers(1, 6), placement=st.sampled_from(["post", "pre"]))
def test_layer_residual_placement(seed, n, placement, device):
    torch.manual_seed(seed % 5)
    layer = EncoderLayer(TransformerConfig.tiny(norm_placement=placement)).to(device, DT).eval()
    check_post_ln_layer(
        layer, torch.randn(2, n, 16, generator=torch.Generator().manual_seed(seed), dtype=DT).to(device)
    )


@pytest.mark.claim("residual.post-ln", "residual.adds-update")
@pytest.mark.parametrize("layer_cls", [mut.NoResidualEncoderLayer, mut.PreNormEncoderLayer])
def test_residual_check_rejects_mutants(layer_cls, device):
    torch.manual_seed(0)
    layer = layer_cls(TransformerConfig.tiny()).to(device, DT).eval()
    with pytest.raises(AssertionError):
        check_post_ln_layer(layer, torch.randn(2, 4, 16, dtype=DT, device=device))


@pytest.mark.claim("residual.post-ln")
def test_pre_placement_adds_final_norm_post_does_not():
    post = EncoderDecoder(TransformerConfig.tiny())
    pre = EncoderDecoder(TransformerConfig.tiny(norm_placement="pre"))
    post_names, pre_names = set(post.state_dict()), set(pre.state_dict())
    assert not any("final_norm" in n for n in post_names)
    assert {"encoder.final_norm.weight", "decoder.final_norm.weight"} <= pre_names
    lm = DecoderOnlyLM(TransformerConfig.tiny(norm_placement="pre"))
    assert "decoder.final_norm.weight" in lm.state_dict()


# ---------------------------------------------------------------- encoder-decoder shapes


def check_output_length_follows_target(model, batch: int, s: int, t: int, device) -> None:
    logits = model(rand_ids(s, (batch, s), device), rand_ids(t, (batch, t), device))
    assert tuple(logits.shape) == (batch, t, model.config.vocab_size), (s, t, tuple(logits.shape))


@pytest.mark.claim("encdec.output-length-independent")
@fixture_ok
@given(batch=st.integers(1, 3), s=st.integers(1, 9), t=st.integers(1, 9))
def test_output_length_follows_the_target(batch, s, t, device):
    check_output_length_follows_target(shared(EncoderDecoder, device), batch, s, t, device)


@pytest.mark.claim("encdec.output-length-independent")
def test_output_length_check_rejects_source_length_output(device):
    with pytest.raises(AssertionError):
        check_output_length_follows_target(build(mut.SourceLengthEncDec, device), 2, 5, 3, device)


@pytest.mark.claim("encdec.teacher-forcing")
def test_teacher_forcing_is_one_pass_of_source_and_whole_target(device):
    model = shared(EncoderDecoder, device)
    src, tgt = rand_ids(1, (2, 5), device), rand_ids(2, (2, 4), device)
    calls: list[int] = []
    handle = model.encoder.register_forward_hook(lambda m, a, r: calls.append(1))
    try:
        logits = model(src, tgt)
    finally:
        handle.remove()
    assert calls == [1] and tuple(logits.shape) == (2, 4, 23)
    assert_close(logits, encdec_recompute(model, src, tgt), "one pass vs prefix by prefix")


# ---------------------------------------------------------------- canonical names and errors


def test_canonical_parameter_names():
    model = EncoderDecoder(TransformerConfig.tiny(positional="learned"))
    names = set(model.state_dict())
    for stem in (
        "src_embed.weight",
        "tgt_embed.weight",
        "src_pos_embed.weight",
        "tgt_pos_embed.weight",
        "lm_head.weight",
    ):
        assert stem in names, stem
    for part in ("self_attn.w_q.weight", "norm_1.weight", "ffn.w_1.weight", "norm_2.bias"):
        assert f"encoder.layers.1.{part}" in names, part
    for part in (
        "self_attn.w_o.bias",
        "norm_1.weight",
        "cross_attn.w_k.weight",
        "norm_2.weight",
        "ffn.w_2.bias",
        "norm_3.bias",
    ):
        assert f"decoder.layers.1.{part}" in names, part
    lm = DecoderOnlyLM(TransformerConfig.tiny(tie_embeddings=True))
    assert lm.lm_head.weight is lm.embed.weight
    assert isinstance(lm.decoder.layers[0], DecoderOnlyLayer) and not hasattr(
        lm.decoder.layers[0], "cross_attn"
    )


def test_bad_inputs_raise_clear_errors(device):
    lm = shared(DecoderOnlyLM, device)
    with pytest.raises(ReferenceInputError, match="ids"):
        lm(torch.full((1, 3), 99, device=device))
    cache = lm.new_cache(1)
    with pytest.raises(ReferenceInputError, match="ids_chunk"):
        lm.step(torch.zeros(1, 0, dtype=torch.long, device=device), cache)
    ed = shared(EncoderDecoder, device)
    memory = ed.encode(rand_ids(1, (1, 4), device))
    cache = ed.new_cache(1)
    ed.step(rand_ids(1, (1, 1), device), memory, cache)
    with pytest.raises(ReferenceInputError, match="memory"):
        ed.step(rand_ids(1, (1, 1), device), memory[:, :2], cache)


# ---------------------------------------------------------------- sizes


def check_base_model(model) -> None:
    """The notes' base model: d_model 512, 8 heads of 64, d_ff 2048, 6 + 6 layers."""
    c = model.config
    assert (c.d_model, c.num_heads, c.d_head, c.d_ff, c.num_layers) == (512, 8, 64, 2048, 6), c
    for stack in (model.encoder, model.decoder):
        assert len(stack.layers) == 6
        layer = stack.layers[0]
        assert tuple(layer.self_attn.w_q.weight.shape) == (512, 512)
        assert tuple(layer.ffn.w_1.weight.shape) == (2048, 512) and tuple(layer.ffn.w_2.weight.shape) == (
            512,
            2048,
        )


@pytest.mark.claim("sizes.base")
def test_base_configuration_runs(device):
    torch.manual_seed(0)
    model = EncoderDecoder(TransformerConfig()).to(device).eval()
    check_base_model(model)
    with torch.no_grad():
        logits = model(rand_ids(1, (1, 5), device, vocab=37000), rand_ids(2, (1, 3), device, vocab=37000))
    assert tuple(logits.shape) == (1, 3, 37000) and bool(torch.isfinite(logits).all())


@pytest.mark.claim("sizes.base")
def test_base_check_rejects_a_smaller_model():
    with pytest.raises(AssertionError):
        check_base_model(EncoderDecoder(TransformerConfig.tiny()))


def check_vocab_head(embed: TokenEmbedding, head: OutputProjection, vocab: int) -> None:
    assert tuple(embed.weight.shape) == (vocab, embed.d_model)
    with torch.no_grad():
        x = embed(torch.tensor([[0, vocab - 1]], device=embed.weight.device))
        logits = head(x)
    assert tuple(logits.shape) == (1, 2, vocab), tuple(logits.shape)


@pytest.mark.claim("sizes.vocab", "output.tied-embedding")
@pytest.mark.parametrize("vocab", [37000, 50257])
def test_vocabulary_sizes(vocab, device):
    assert TransformerConfig(vocab_size=vocab).vocab_size == vocab
    embed = TokenEmbedding(vocab, 512).to(device)
    check_vocab_head(embed, OutputProjection(512, vocab).to(device), vocab)
    tied = OutputProjection(512, vocab, tied_to=embed)
    assert tied.weight is embed.weight
    check_vocab_head(embed, tied, vocab)


@pytest.mark.claim("sizes.vocab")
def test_vocab_check_rejects_a_head_of_another_size():
    with pytest.raises(AssertionError):
        check_vocab_head(TokenEmbedding(37000, 8), OutputProjection(8, 36999), 37000)


def _raises_input_error(fn: Callable[[], object]) -> bool:
    try:
        fn()
    except ReferenceInputError:
        return True
    return False


def check_context_limit(model) -> None:
    """GPT-2 style learned positions 0..1023: 1024 tokens run, 1025 are rejected (one pass or cached)."""
    limit = model.config.max_len
    device = model.lm_head.weight.device
    logits = model(rand_ids(1, (1, limit), device))
    assert tuple(logits.shape) == (1, limit, model.config.vocab_size)
    assert _raises_input_error(lambda: model(rand_ids(1, (1, limit + 1), device))), "one pass past max_len"
    cache = model.new_cache(1)
    model.step(rand_ids(2, (1, limit), device), cache)
    assert _raises_input_error(lambda: model.step(rand_ids(3, (1, 1), device), cache)), (
        "cached step past max_len"
    )


@pytest.mark.claim("sizes.gpt2-context", "positional.learned.max-length")
def test_gpt2_context_length(device):
    check_context_limit(build(DecoderOnlyLM, device, positional="learned", max_len=1024, num_layers=1))


@pytest.mark.claim("sizes.gpt2-context")
def test_context_check_rejects_wrapping_positions(device):
    with pytest.raises(AssertionError):
        check_context_limit(
            build(mut.WrappingPositionsLM, device, positional="learned", max_len=1024, num_layers=1)
        )
