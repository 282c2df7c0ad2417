"""Generation: autoregressive decoding from a prompt (decoder-only) or from BOS (encoder-decoder).

Each contract is a ``check_*`` function taking the generator function under test; the reference
generators must pass and the planted-bug generators / models from ``mutants_models`` must fail the
very same function. Models run in float64 so that greedy choices are not decided by rounding.
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from tests.reference import mutants_models as mut
from transformer_conformance.reference.checking import ReferenceInputError
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.generation import generate_encdec, generate_lm
from transformer_conformance.reference.masks import padding_mask_from_lengths
from transformer_conformance.reference.model import DecoderOnlyLM, EncoderDecoder

DT = torch.float64
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
costly = settings(
    fixture_ok, max_examples=max(2, settings.default.max_examples // 3) if settings.default else 3
)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
CONFIG = TransformerConfig.tiny()
# Five tokens (pad, bos, eos and two words): sampling at a high temperature meets EOS within a few steps.
SMALL = TransformerConfig.tiny(vocab_size=5)
_BUILT: dict[tuple[str, str, int], torch.nn.Module] = {}


def build(cls: type, device, seed: int = 0, config: TransformerConfig = CONFIG):
    torch.manual_seed(seed)
    return cls(config).to(device=device, dtype=DT).eval()


def shared(cls: type, device, config: TransformerConfig = CONFIG):
    key = (cls.__name__, str(device), config.vocab_size)
    if key not in _BUILT:
        _BUILT[key] = build(cls, device, config=config)
    return _BUILT[key]


def rand_ids(seed: int, shape, device, vocab: int = CONFIG.vocab_size) -> Tensor:
    return torch.randint(0, vocab, tuple(shape), generator=torch.Generator().manual_seed(seed)).to(device)


def gen(device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def first_eos(row: Tensor, eos: int, start: int) -> int | None:
    hits = (row[start:] == eos).nonzero()
    return None if hits.numel() == 0 else start + int(hits[0])


# ---------------------------------------------------------------- checks


def check_lm_autoregressive(generate, model, prompt: Tensor, n: int) -> None:
    """Greedy: every new token is the argmax of the model run on everything before it."""
    out = generate(model, prompt, max_new_tokens=n)
    p = prompt.shape[1]
    assert out.shape[1] == p + n, f"expected {p + n} ids, got {out.shape[1]}"
    for j in range(p, p + n):
        expected = model(out[:, :j])[:, -1].argmax(-1)
        assert torch.equal(out[:, j], expected), f"token {j} is not the argmax given tokens 0..{j - 1}"


def check_prompt_continuation(generate, model, prompt: Tensor, n: int) -> None:
    """The output starts with the prompt unchanged and continues it."""
    out = generate(model, prompt, max_new_tokens=n)
    assert out.shape[1] >= prompt.shape[1] and torch.equal(out[:, : prompt.shape[1]], prompt), (
        "prompt not kept"
    )
    check_lm_autoregressive(generate, model, prompt, n)


def check_encdec_autoregressive(generate, model, src: Tensor, max_len: int) -> None:
    """Greedy: each target token is the argmax of decode(prefix) until the sequence's EOS."""
    ys = generate(model, src, max_len=max_len)
    memory = model.encode(src)
    eos = model.config.eos_id
    for b in range(ys.shape[0]):
        stop = first_eos(ys[b], eos, 1)
        last = ys.shape[1] - 1 if stop is None else stop
        for j in range(1, last + 1):
            expected = int(model.decode(ys[b : b + 1, :j], memory[b : b + 1])[0, -1].argmax())
            assert int(ys[b, j]) == expected, f"sequence {b}, token {j}"


def check_starts_from_bos(generate, model, src: Tensor, max_len: int) -> None:
    """The target starts with BOS alone: column 0 is BOS and token 1 is the argmax of decode([BOS])."""
    ys = generate(model, src, max_len=max_len)
    bos = model.config.bos_id
    assert bool((ys[:, 0] == bos).all()), f"first column {ys[:, 0].tolist()} is not BOS={bos}"
    start = torch.full_like(src[:, :1], bos)
    assert torch.equal(ys[:, 1], model.decode(start, model.encode(src))[:, -1].argmax(-1)), (
        "token 1 not from [BOS]"
    )


def check_stops_at_eos(generate_rows, eos: int, pad: int, limit: int, start: int) -> None:
    """Per sequence only pad after the first EOS; the run ends once every sequence stopped, or at the limit.

    ``generate_rows()`` returns the ids; positions ``>= start`` are generated, at most ``limit`` ids in all.
    """
    out = generate_rows()
    assert out.shape[1] <= limit, f"{out.shape[1]} ids exceed the limit {limit}"
    stops = [first_eos(row, eos, start) for row in out]
    assert any(s is not None for s in stops), "test input: no sequence produced EOS (choose another seed)"
    for b, stop in enumerate(stops):
        if stop is not None:
            assert bool((out[b, stop + 1 :] == pad).all()), f"sequence {b} continues after EOS at {stop}"
    if all(s is not None for s in stops):
        assert max(s for s in stops if s is not None) == out.shape[1] - 1, (
            "ran on after every sequence stopped"
        )
    else:
        assert out.shape[1] == limit, "stopped early although a sequence had not produced EOS"


# ---------------------------------------------------------------- decoder-only generation


@pytest.mark.claim("decoding.autoregressive", "decoding.prompt-continuation")
@costly
@given(seed=seeds, batch=st.integers(1, 2), p=st.integers(1, 4), n=st.integers(1, 4), use_cache=st.booleans())
def test_lm_generation_continues_the_prompt_autoregressively(seed, batch, p, n, use_cache, device):
    def generate(model, prompt, *, max_new_tokens):
        return generate_lm(model, prompt, max_new_tokens=max_new_tokens, use_cache=use_cache)

    check_prompt_continuation(generate, shared(DecoderOnlyLM, device), rand_ids(seed, (batch, p), device), n)


@pytest.mark.claim("decoding.autoregressive")
def test_autoregressive_check_rejects_context_free_generation(device):
    with pytest.raises(AssertionError):
        check_lm_autoregressive(
            mut.generate_lm_without_context, build(DecoderOnlyLM, device), rand_ids(1, (2, 4), device), 5
        )


@pytest.mark.claim("decoding.prompt-continuation")
def test_prompt_check_rejects_dropped_prompt(device):
    with pytest.raises(AssertionError):
        check_prompt_continuation(
            mut.generate_lm_drops_prompt, build(DecoderOnlyLM, device), rand_ids(1, (2, 4), device), 3
        )


@pytest.mark.claim("decoding.stops-at-eos")
@pytest.mark.parametrize("seed", [0, 1])
def test_lm_generation_stops_at_eos(seed, device):
    model, prompt = shared(DecoderOnlyLM, device, SMALL), rand_ids(seed, (3, 2), device, vocab=5)

    def run():
        return generate_lm(
            model, prompt, max_new_tokens=16, temperature=3.0, eos_id=2, generator=gen(device, seed)
        )

    check_stops_at_eos(run, eos=SMALL.eos_id, pad=SMALL.pad_id, limit=18, start=2)


@pytest.mark.claim("decoding.stops-at-eos")
def test_stops_at_eos_check_rejects_generation_past_eos(device):
    model, src = build(EncoderDecoder, device, config=SMALL), rand_ids(3, (3, 4), device, vocab=5)

    def run():
        return mut.generate_encdec_ignores_eos(
            model, src, max_len=12, temperature=3.0, generator=gen(device, 0)
        )

    with pytest.raises(AssertionError):
        check_stops_at_eos(run, eos=SMALL.eos_id, pad=SMALL.pad_id, limit=13, start=1)


@pytest.mark.claim("kvcache.equals-recompute", "decoding.autoregressive")
@costly
@given(
    seed=seeds, temperature=st.sampled_from([0.0, 0.7, 2.0]), p=st.integers(1, 4), left_padded=st.booleans()
)
def test_lm_generation_same_with_and_without_cache(seed, temperature, p, left_padded, device):
    model, prompt = shared(DecoderOnlyLM, device), rand_ids(seed, (2, p), device)
    pad = None
    if left_padded:
        pad = padding_mask_from_lengths(torch.tensor([max(1, p - 1), p]), p, side="left").to(device)
    runs = [
        generate_lm(
            model,
            prompt,
            max_new_tokens=4,
            temperature=temperature,
            eos_id=2,
            generator=gen(device, seed),
            use_cache=use_cache,
            prompt_pad=pad,
        )
        for use_cache in (True, False)
    ]
    assert torch.equal(runs[0], runs[1]), runs


@pytest.mark.claim("kvcache.equals-recompute")
def test_cache_generation_check_rejects_wrong_cache_offset(device):
    model, prompt = build(mut.OffsetBugLM, device), rand_ids(0, (2, 3), device)
    runs = [generate_lm(model, prompt, max_new_tokens=6, use_cache=c) for c in (True, False)]
    assert not torch.equal(runs[0], runs[1])


@pytest.mark.claim("batch.independence", "decoding.prompt-continuation")
def test_left_padded_batch_generates_like_each_row_alone(device):
    model = shared(DecoderOnlyLM, device)
    prompt = rand_ids(5, (3, 4), device)
    pad = padding_mask_from_lengths(torch.tensor([2, 4, 3]), 4, side="left").to(device)
    together = generate_lm(model, prompt, max_new_tokens=4, prompt_pad=pad)
    for b in range(3):
        alone = generate_lm(model, prompt[b : b + 1], max_new_tokens=4, prompt_pad=pad[b : b + 1])
        assert torch.equal(together[b : b + 1], alone), b


# ---------------------------------------------------------------- encoder-decoder generation


@pytest.mark.claim("decoding.starts-from-bos", "decoding.autoregressive")
@costly
@given(
    seed=seeds,
    batch=st.integers(1, 2),
    s=st.integers(1, 5),
    max_len=st.integers(1, 4),
    use_cache=st.booleans(),
)
def test_encdec_generation_from_bos(seed, batch, s, max_len, use_cache, device):
    def generate(model, src, *, max_len):
        return generate_encdec(model, src, max_len=max_len, use_cache=use_cache)

    model, src = shared(EncoderDecoder, device), rand_ids(seed, (batch, s), device)
    check_starts_from_bos(generate, model, src, max_len)
    check_encdec_autoregressive(generate, model, src, max_len)


@pytest.mark.claim("decoding.starts-from-bos")
def test_bos_check_rejects_generation_from_pad(device):
    with pytest.raises(AssertionError):
        check_starts_from_bos(
            mut.generate_encdec_from_pad, build(EncoderDecoder, device), rand_ids(1, (2, 4), device), 3
        )


@pytest.mark.claim("decoding.stops-at-eos")
@pytest.mark.parametrize("seed", [0, 1])
def test_encdec_generation_stops_at_eos(seed, device):
    model, src = shared(EncoderDecoder, device, SMALL), rand_ids(seed, (3, 4), device, vocab=5)

    def run():
        return generate_encdec(model, src, max_len=16, temperature=3.0, generator=gen(device, seed))

    check_stops_at_eos(run, eos=SMALL.eos_id, pad=SMALL.pad_id, limit=17, start=1)


@pytest.mark.claim("kvcache.equals-recompute", "kvcache.cross-computed-once")
@costly
@given(seed=seeds, temperature=st.sampled_from([0.0, 1.0, 3.0]), s=st.integers(1, 5))
def test_encdec_generation_same_with_and_without_cache(seed, temperature, s, device):
    model, src = shared(EncoderDecoder, device), rand_ids(seed, (2, s), device)
    runs = [
        generate_encdec(
            model, src, max_len=5, temperature=temperature, generator=gen(device, seed), use_cache=c
        )
        for c in (True, False)
    ]
    assert torch.equal(runs[0], runs[1]), runs


def test_generation_rejects_bad_arguments(device):
    lm, ed = shared(DecoderOnlyLM, device), shared(EncoderDecoder, device)
    prompt = rand_ids(0, (1, 2), device)
    with pytest.raises(ReferenceInputError, match="max_new_tokens"):
        generate_lm(lm, prompt, max_new_tokens=-1)
    with pytest.raises(ReferenceInputError, match="temperature"):
        generate_lm(lm, prompt, max_new_tokens=1, temperature=-1.0)
    with pytest.raises(ReferenceInputError, match="max_len"):
        generate_encdec(ed, prompt, max_len=-1)
    assert torch.equal(generate_lm(lm, prompt, max_new_tokens=0), prompt)
