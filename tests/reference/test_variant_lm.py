"""The variant LM: the default is the notes' model, cached decoding for every variant, windowed caches,
position ids under left padding, the parallel block and the final norm of a pre-norm stack."""

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.reference import mutants_variants as mut
from tests.reference.variant_helpers import FIXTURE_OK, ids
from transformer_conformance.reference import name_tables as nt
from transformer_conformance.reference import presets
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.checking import ReferenceInputError
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.model import DecoderOnlyLM, EncoderDecoder
from transformer_conformance.reference.tolerance import assert_close, assert_differs
from transformer_conformance.reference.variant_lm import VariantLM

VOCAB = 23


def tiny(arch: Architecture, **overrides) -> TransformerConfig:
    return TransformerConfig.tiny(arch=arch, **overrides)


VARIANTS = {
    "rotary": tiny(Architecture(positions="rotary"), norm_placement="pre"),
    "rotary-interleaved-partial": tiny(
        Architecture(positions="rotary", rope_layout="interleaved", rope_fraction=0.5)
    ),
    "alibi": tiny(Architecture(positions="alibi")),
    "relative": tiny(
        Architecture(positions="relative", relative_buckets=8, relative_max_distance=12, attn_scale=1.0)
    ),
    "gqa": tiny(Architecture(positions="rotary", num_kv_heads=2), norm_placement="pre"),
    "mqa-tiled": tiny(Architecture(positions="none", num_kv_heads=1, kv_mapping="tiled")),
    "window": tiny(Architecture(positions="rotary", sliding_window=3, num_kv_heads=2), norm_placement="pre"),
    "softcap": tiny(Architecture(positions="rotary", attn_softcap=2.0)),
    "llama": presets.llama(vocab_size=VOCAB, d_model=16, num_heads=4, num_kv_heads=2, d_ff=24, num_layers=2),
    "neox": presets.gpt_neox(
        vocab_size=VOCAB, d_model=16, num_heads=4, d_ff=24, num_layers=2, rope_fraction=0.5
    ),
    "gptj-shared-norm": tiny(
        Architecture(positions="rotary", rope_layout="interleaved", block="parallel", shared_norm=True),
        norm_placement="pre",
    ),
    "gemma-like": tiny(
        Architecture(
            positions="rotary", norm="rmsnorm", norm_offset=True, gated=True, activation="gelu_tanh"
        ),
        norm_placement="pre",
        scale_embedding=True,
        tie_embeddings=True,
    ),
}


def build(config: TransformerConfig, seed: int, cls=VariantLM) -> VariantLM:
    torch.manual_seed(seed)
    model = cls(config).double().eval()
    with torch.no_grad():  # the offset-form gain starts at 0: give every norm a non-trivial gain
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def cached_logits(model: VariantLM, tokens, chunks: list[int], **cache_kwargs):
    cache = model.new_cache(tokens.shape[0], **cache_kwargs)
    out, start = [], 0
    for size in chunks:
        out.append(model.step(tokens[:, start : start + size], cache))
        start += size
    return torch.cat(out, dim=1), cache


def split(length: int, data) -> list[int]:
    first = data.draw(st.integers(1, length))
    rest = []
    while first + sum(rest) < length:
        rest.append(data.draw(st.integers(1, length - first - sum(rest))))
    return [first, *rest]


def check_cache(model: VariantLM, tokens, chunks: list[int]) -> None:
    logits, _ = cached_logits(model, tokens, chunks)
    assert_close(logits, model(tokens), f"cached decoding in chunks {chunks} vs recompute")


@pytest.mark.claim("lm.variant-cache-equals-recompute")
@FIXTURE_OK
@given(
    name=st.sampled_from(sorted(VARIANTS)),
    length=st.integers(2, 8),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_cache_equals_recompute_for_every_variant(name, length, seed, data) -> None:
    model = build(VARIANTS[name], seed)
    check_cache(model, ids((2, length), seed, VOCAB), split(length, data))


@pytest.mark.claim("lm.variant-cache-equals-recompute")
def test_cache_check_rejects_rotary_positions_restarting_after_the_cache() -> None:
    model = build(VARIANTS["llama"], 0, mut.RotaryRestartsLM)
    with pytest.raises(AssertionError):
        check_cache(model, ids((2, 6), 0, VOCAB), [3, 1, 1, 1])


@pytest.mark.claim("lm.variant-cache-equals-recompute", "gqa.repeat-equivalence")
def test_gqa_cache_holds_kv_heads() -> None:
    model = build(VARIANTS["gqa"], 0)
    _, cache = cached_logits(model, ids((2, 5), 0, VOCAB), [5])
    assert cache.layers[0].k is not None and tuple(cache.layers[0].k.shape) == (2, 2, 5, 4)


def check_window_cache(model: VariantLM, tokens, window: int) -> None:
    full = model(tokens)
    dropped, cache = cached_logits(model, tokens, [2] + [1] * (tokens.shape[1] - 2))
    kept, kept_cache = cached_logits(
        model, tokens, [2] + [1] * (tokens.shape[1] - 2), drop_outside_window=False
    )
    assert cache.length <= window - 1 and kept_cache.length == tokens.shape[1]
    assert_close(kept, full, "windowed model: full cache vs recompute")
    assert_close(dropped, full, f"cache keeping the last {window - 1} positions vs recompute")


@pytest.mark.claim("window.cache-drop")
@FIXTURE_OK
@given(window=st.integers(2, 5), length=st.integers(6, 10), seed=st.integers(0, 2**16))
def test_windowed_cache_may_drop_old_keys(window, length, seed) -> None:
    config = presets.mistral(
        sliding_window=window,
        vocab_size=VOCAB,
        d_model=16,
        num_heads=4,
        num_kv_heads=2,
        d_ff=24,
        num_layers=2,
    )
    check_window_cache(build(config, seed), ids((2, length), seed, VOCAB), window)


@pytest.mark.claim("window.cache-drop")
def test_window_cache_check_rejects_dropping_one_too_many() -> None:
    config = presets.mistral(
        sliding_window=3, vocab_size=VOCAB, d_model=16, num_heads=4, d_ff=24, num_layers=2
    )
    with pytest.raises(AssertionError):
        check_window_cache(build(config, 0, mut.WindowCacheOffByOneLM), ids((2, 8), 0, VOCAB), 3)


@pytest.mark.claim("window.blind-outside", "window.full-when-wide")
@FIXTURE_OK
@given(window=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_model_window_hides_old_tokens_and_wide_window_is_causal(window, seed) -> None:
    config = presets.mistral(
        sliding_window=window, vocab_size=VOCAB, d_model=16, num_heads=4, d_ff=24, num_layers=1
    )
    model = build(config, seed)
    tokens = ids((1, 7), seed, VOCAB)
    changed = tokens.clone()
    changed[0, 0] = 3 if tokens[0, 0] != 3 else 4
    assert_close(
        model(changed)[:, window:], model(tokens)[:, window:], f"token 0 outside a one-layer window {window}"
    )
    wide = build(
        presets.mistral(sliding_window=7, vocab_size=VOCAB, d_model=16, num_heads=4, d_ff=24, num_layers=1), 0
    )
    plain = VariantLM(
        presets.llama(vocab_size=VOCAB, d_model=16, num_heads=4, d_ff=24, num_layers=1)
    ).double()
    plain.load_state_dict(wide.state_dict())
    assert_close(wide(tokens), plain(tokens), "window 7 over 7 tokens vs no window")


def load_notes_weights(variant: VariantLM, notes: DecoderOnlyLM) -> None:
    state = notes.state_dict()
    table = nt.present_rules(nt.NOTES_DECODER_ONLY, state)
    variant.load_state_dict(nt.to_reference(state, table, num_layers=notes.config.num_layers, num_heads=4))


def check_notes_default(variant_cls, placement: str, positional: str, seed: int) -> None:
    config = TransformerConfig.tiny(norm_placement=placement, positional=positional)
    torch.manual_seed(seed)
    notes = DecoderOnlyLM(config).double().eval()
    variant = variant_cls(config).double().eval()
    load_notes_weights(variant, notes)
    tokens = ids((2, 6), seed, VOCAB)
    pad = torch.ones(2, 6, dtype=torch.bool)
    pad[1, 4:] = False
    assert_close(
        variant(tokens, pad), notes(tokens, pad), f"VariantLM vs DecoderOnlyLM ({placement}, {positional})"
    )
    cache_v, cache_n = variant.new_cache(2), notes.new_cache(2)
    for t in range(6):
        assert_close(
            variant.step(tokens[:, t : t + 1], cache_v),
            notes.step(tokens[:, t : t + 1], cache_n),
            f"step {t}",
        )


@pytest.mark.claim("arch.notes-default")
@FIXTURE_OK
@given(
    placement=st.sampled_from(["post", "pre"]),
    positional=st.sampled_from(["sinusoidal", "learned"]),
    seed=st.integers(0, 2**16),
)
def test_default_architecture_is_the_notes_model(placement, positional, seed) -> None:
    check_notes_default(VariantLM, placement, positional, seed)


class _PreNormVariantLM(VariantLM):
    def __init__(self, config):
        super().__init__(config)
        mut.swap_blocks(self, mut.AlwaysPreNormBlock)


@pytest.mark.claim("arch.notes-default")
def test_notes_default_check_rejects_pre_norm_blocks_by_default() -> None:
    with pytest.raises(AssertionError):
        check_notes_default(_PreNormVariantLM, "post", "sinusoidal", 0)


@pytest.mark.claim("arch.notes-default")
@pytest.mark.parametrize("cls", [DecoderOnlyLM, EncoderDecoder])
def test_notes_models_refuse_other_architectures(cls) -> None:
    with pytest.raises(ReferenceInputError, match=r"config\.arch"):
        cls(TransformerConfig.tiny(arch=Architecture(positions="rotary")))


def left_padded(tokens, pads: int):
    b, n = tokens.shape
    padded = torch.cat([torch.zeros(b, pads, dtype=tokens.dtype), tokens], dim=1)
    mask = torch.cat([torch.zeros(b, pads, dtype=torch.bool), torch.ones(b, n, dtype=torch.bool)], dim=1)
    return padded, mask


POSITION_KINDS = {
    "sinusoidal": (Architecture(), "sinusoidal"),
    "learned": (Architecture(), "learned"),
    "rotary": (Architecture(positions="rotary"), "sinusoidal"),
    "alibi": (Architecture(positions="alibi"), "sinusoidal"),
    "relative": (
        Architecture(positions="relative", relative_buckets=8, relative_max_distance=12),
        "sinusoidal",
    ),
    "none": (Architecture(positions="none"), "sinusoidal"),
}


def padded_vs_unpadded(cls, kind: str, position_ids: str, pads: int, seed: int):
    arch, positional = POSITION_KINDS[kind]
    config = tiny(Architecture(**{**arch.__dict__, "position_ids": position_ids}), positional=positional)
    model = build(config, seed, cls)
    tokens = ids((2, 5), seed, VOCAB)
    padded, mask = left_padded(tokens, pads)
    return model(padded, mask)[:, pads:], model(tokens)


@pytest.mark.claim("lm.left-padding-position-ids")
@FIXTURE_OK
@given(kind=st.sampled_from(sorted(POSITION_KINDS)), pads=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_positions_from_first_token_make_left_padding_invisible(kind, pads, seed) -> None:
    padded, plain = padded_vs_unpadded(VariantLM, kind, "from_first_token", pads, seed)
    assert_close(padded, plain, f"{kind}: left-padded vs unpadded, positions from the first real token")


@pytest.mark.claim("lm.left-padding-position-ids")
@FIXTURE_OK
@given(
    kind=st.sampled_from(["rotary", "alibi", "relative", "none"]),
    pads=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_slot_positions_keep_relative_kinds_padding_invariant(kind, pads, seed) -> None:
    padded, plain = padded_vs_unpadded(VariantLM, kind, "slots", pads, seed)
    assert_close(padded, plain, f"{kind}: left-padded vs unpadded, slot positions")


@pytest.mark.claim("lm.left-padding-position-ids")
@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_slot_positions_shift_absolute_positions(kind) -> None:
    padded, plain = padded_vs_unpadded(VariantLM, kind, "slots", 2, 0)
    assert_differs(padded, plain, f"{kind}: slots under left padding")


@pytest.mark.claim("lm.left-padding-position-ids")
def test_padding_check_rejects_slots_where_first_token_is_declared() -> None:
    padded, plain = padded_vs_unpadded(mut.SlotPositionIdsLM, "learned", "from_first_token", 2, 0)
    with pytest.raises(AssertionError):
        assert_close(padded, plain, "mutant")


@pytest.mark.claim("lm.left-padding-position-ids", "lm.variant-cache-equals-recompute")
@FIXTURE_OK
@given(kind=st.sampled_from(["learned", "rotary"]), seed=st.integers(0, 2**16))
def test_decoding_after_a_left_padded_prompt(kind, seed) -> None:
    arch, positional = POSITION_KINDS[kind]
    config = tiny(
        Architecture(**{**arch.__dict__, "position_ids": "from_first_token"}), positional=positional
    )
    model = build(config, seed)
    tokens = ids((3, 6), seed, VOCAB)
    prompt_lengths = [3, 1, 2]  # row r: a prompt of prompt_lengths[r] real tokens, left-padded to 3
    padded = torch.zeros(3, 3, dtype=torch.long)
    mask = torch.zeros(3, 3, dtype=torch.bool)
    for r, n in enumerate(prompt_lengths):
        padded[r, 3 - n :], mask[r, 3 - n :] = tokens[r, :n], True
    cache = model.new_cache(3)
    first = model.step(padded, cache, mask)
    steps = [
        model.step(torch.stack([tokens[r, n + t] for r, n in enumerate(prompt_lengths)])[:, None], cache)
        for t in range(3)
    ]
    for r, n in enumerate(prompt_lengths):
        alone = model(tokens[r : r + 1, : n + 3])[0]
        got = torch.cat([first[r, 3 - n :], *(s[r] for s in steps)], dim=0)
        assert_close(got, alone, f"{kind}: row {r} (prompt {n}, left-padded) then decoding vs unpadded")


def check_parallel(model: VariantLM, x) -> None:
    """Layer output ``x + attn(n1(x)) + ffn(n2(x))`` computed from the layer's own submodules."""
    layer = model.layers[0]
    n = x.shape[1]
    pos = torch.arange(n).expand(x.shape[0], n)
    keep = torch.ones(n, n, dtype=torch.bool).tril()[None, None]
    norm_2 = layer.norm_2 if layer.norm_2 is not None else layer.norm_1
    expected = x + layer.attn(layer.norm_1(x), pos, keep, None, None) + layer.ffn(norm_2(x))
    assert_close(layer(x, pos, keep, None, None), expected.double(), "parallel block")


@pytest.mark.claim("block.parallel-formula")
@FIXTURE_OK
@given(name=st.sampled_from(["neox", "gptj-shared-norm"]), seed=st.integers(0, 2**16))
def test_parallel_block_formula(name, seed) -> None:
    model = build(VARIANTS[name], seed)
    check_parallel(model, torch.randn(2, 5, 16, dtype=torch.float64))
    assert (model.layers[0].norm_2 is None) == (name == "gptj-shared-norm")


@pytest.mark.claim("block.parallel-formula")
def test_parallel_check_rejects_sequential_block() -> None:
    model = build(VARIANTS["neox"], 0)
    mut.swap_blocks(model, mut.SequentialInsteadOfParallelBlock)
    with pytest.raises(AssertionError):
        check_parallel(model, torch.randn(2, 5, 16, dtype=torch.float64))


def check_final_norm(model: VariantLM, tokens) -> None:
    """Logits are ``lm_head(final_norm(h))`` of the last layer's output ``h`` (captured with a hook)."""
    captured = []
    handle = model.layers[-1].register_forward_hook(lambda _m, _i, out: captured.append(out))
    logits = model(tokens)
    handle.remove()
    assert model.final_norm is not None
    assert_close(logits, model.lm_head(model.final_norm(captured[0])).double(), "logits vs lm_head(norm(h))")


@pytest.mark.claim("block.final-norm")
@FIXTURE_OK
@given(name=st.sampled_from(["llama", "neox", "rotary", "gemma-like"]), seed=st.integers(0, 2**16))
def test_pre_norm_stack_ends_with_final_norm(name, seed) -> None:
    check_final_norm(build(VARIANTS[name], seed), ids((2, 5), seed, VOCAB))


@pytest.mark.claim("block.final-norm")
def test_final_norm_check_rejects_missing_final_norm() -> None:
    with pytest.raises(AssertionError):
        check_final_norm(build(VARIANTS["llama"], 0, mut.MissingFinalNormLM), ids((2, 5), 0, VOCAB))


@pytest.mark.claim("arch.notes-default")
def test_bad_architecture_values_name_the_field() -> None:
    with pytest.raises(ReferenceInputError, match=r"arch\.num_kv_heads"):
        TransformerConfig.tiny(arch=Architecture(num_kv_heads=3))
    with pytest.raises(ReferenceInputError, match=r"arch\.rope_fraction"):
        TransformerConfig.tiny(arch=Architecture(positions="rotary", rope_fraction=0.3))
    with pytest.raises(ReferenceInputError, match=r"arch\.positions"):
        Architecture(positions="spiral")  # type: ignore[arg-type]
    assert copy.deepcopy(Architecture()) == Architecture()
