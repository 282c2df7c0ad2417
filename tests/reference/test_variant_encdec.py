"""The variant encoder (BERT-like) and encoder-decoder (BART-, T5-like): bidirectionality, padding,
padded cached decoding, T5's unscaled scores and rescaled head, each with a planted bug it rejects."""

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reference.variant_helpers import ids
from transformer_conformance.reference import variant_lm
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.grouped import grouped_attention
from transformer_conformance.reference.tolerance import assert_close, assert_differs
from transformer_conformance.reference.variant_encdec import VariantEncoder, VariantEncoderDecoder

VOCAB = 29
FEW = settings(max_examples=8, deadline=None)

BERT_LIKE = Architecture(activation="gelu", embed_norm=True)
BART_LIKE = Architecture(activation="gelu", embed_norm=True, position_offset=2, shared_embeddings=True)
T5_LIKE = Architecture(
    positions="relative",
    relative_buckets=8,
    relative_max_distance=16,
    norm="rmsnorm",
    ffn_bias=False,
    qkv_bias=False,
    out_bias=False,
    attn_scale=1.0,
    shared_embeddings=True,
    head_rescale=True,
)
ROTARY = Architecture(positions="rotary", norm="rmsnorm", num_kv_heads=2)
ARCHS = {"notes": Architecture(), "bert": BERT_LIKE, "bart": BART_LIKE, "t5": T5_LIKE, "rotary": ROTARY}


def config(name: str) -> TransformerConfig:
    arch = ARCHS[name]
    learned = name in ("bert", "bart")
    return TransformerConfig.tiny(
        vocab_size=VOCAB,
        arch=arch,
        positional="learned" if learned else "sinusoidal",
        norm_placement="pre" if name in ("t5", "rotary") else "post",
        tie_embeddings=name in ("bart", "t5"),
        max_len=32,
    )


def build(cls: type, name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    module: torch.nn.Module = cls(config(name)).double().eval()
    return module


def check_bidirectional(model: VariantEncoder, tokens: torch.Tensor, j: int) -> None:
    """Replacing the token at ``j`` moves every earlier hidden state."""
    changed = tokens.clone()
    changed[:, j] = (tokens[:, j] + 1 - 3) % (VOCAB - 3) + 3  # another id in [3, VOCAB)
    base, moved = model(tokens), model(changed)
    for i in range(j):
        assert_differs(moved[:, i], base[:, i], f"hidden state {i} after changing token {j}")


@pytest.mark.claim("encoder.model-bidirectional", "encoder.bidirectional")
@FEW
@given(name=st.sampled_from(sorted(ARCHS)), n=st.integers(2, 7), data=st.data(), seed=st.integers(0, 2**16))
def test_encoder_sees_later_tokens(name, n, data, seed) -> None:
    model = build(VariantEncoder, name, seed)
    j = data.draw(st.integers(1, n - 1))
    with torch.no_grad():
        check_bidirectional(model, ids((2, n), seed, VOCAB), j)


@pytest.mark.claim("encoder.model-bidirectional")
def test_bidirectional_check_rejects_a_causal_encoder() -> None:
    model = build(VariantEncoder, "bert", 0)
    model.encoder.causal = True  # the bug: a decoder's mask in an encoder
    with torch.no_grad(), pytest.raises(AssertionError):
        check_bidirectional(model, ids((2, 5), 0, VOCAB), 4)


def check_padding(model: torch.nn.Module, tokens: torch.Tensor, lengths: list[int], seed: int) -> None:
    """Random pad ids change nothing real; each right-padded row equals itself alone."""
    n = tokens.shape[1]
    keep = torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]
    padded = torch.where(keep, tokens, ids(tokens.shape, seed + 1, VOCAB, low=0))
    base = model(torch.where(keep, tokens, 0), keep)
    assert_close(model(padded, keep)[keep], base[keep], "random pad ids")
    for i, length in enumerate(lengths):
        assert_close(model(tokens[i : i + 1, :length])[0], base[i, :length], f"row {i} alone")


@pytest.mark.claim("encoder.model-padding-invariance", "mask.padding.invariance")
@FEW
@given(name=st.sampled_from(sorted(ARCHS)), n=st.integers(2, 7), data=st.data(), seed=st.integers(0, 2**16))
def test_encoder_ignores_right_padding(name, n, data, seed) -> None:
    lengths = [n, *data.draw(st.lists(st.integers(1, n), min_size=1, max_size=2))]
    model = build(VariantEncoder, name, seed)
    with torch.no_grad():
        check_padding(model, ids((len(lengths), n), seed, VOCAB), lengths, seed)


class MaskBlindEncoder(VariantEncoder):
    """Bug: the pad mask never reaches the stack."""

    def forward(self, ids, pad_mask=None):  # type: ignore[no-untyped-def]
        return super().forward(ids, None)


@pytest.mark.claim("encoder.model-padding-invariance")
def test_padding_check_rejects_a_mask_blind_encoder() -> None:
    model = build(MaskBlindEncoder, "bert", 0)
    with torch.no_grad(), pytest.raises(AssertionError):
        check_padding(model, ids((2, 6), 0, VOCAB), [6, 2], 0)


def check_padded_prompt(model, side: str, lengths: list[int], seed: int) -> None:  # type: ignore[no-untyped-def]
    """A padded decoder prompt as one chunk, then single tokens == the teacher-forced decode."""
    b, prompt, extra = len(lengths), 5, 3
    n = prompt + extra
    ar = torch.arange(prompt)[None, :]
    lens = torch.tensor(lengths)[:, None]
    prompt_keep = ar < lens if side == "right" else ar >= prompt - lens
    keep = torch.cat([prompt_keep, torch.ones(b, extra, dtype=torch.bool)], 1)
    src, tgt = ids((b, 4), seed, VOCAB), ids((b, n), seed + 1, VOCAB)
    src_pad = torch.ones(b, 4, dtype=torch.bool)
    src_pad[0, 2:] = False
    memory = model.encode(src, src_pad)
    full = model.decode(tgt, memory, src_pad, keep)
    cache = model.new_cache(b)
    steps = [model.step(tgt[:, :prompt], memory, cache, src_pad, keep[:, :prompt])]
    steps += [
        model.step(tgt[:, t : t + 1], memory, cache, src_pad, keep[:, t : t + 1]) for t in range(prompt, n)
    ]
    assert_close(torch.cat(steps, 1)[keep], full[keep], f"{side}-padded prompt on the cache")


@pytest.mark.claim("encdec.cache-padded-prompts", "kvcache.equals-recompute")
@FEW
@given(
    name=st.sampled_from(sorted(ARCHS)),
    side=st.sampled_from(["left", "right"]),
    lengths=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_padded_decoder_prompts_on_the_cache(name, side, lengths, seed) -> None:
    model = build(VariantEncoderDecoder, name, seed)
    with torch.no_grad():
        check_padded_prompt(model, side, lengths, seed)


class PadBlindStep(VariantEncoderDecoder):
    """Bug: ``step`` drops ``tgt_pad_chunk``."""

    def step(self, tgt_chunk, memory, cache, src_pad=None, tgt_pad_chunk=None):  # type: ignore[no-untyped-def]
        return super().step(tgt_chunk, memory, cache, src_pad, None)


@pytest.mark.claim("encdec.cache-padded-prompts")
def test_padded_prompt_check_rejects_a_pad_blind_step() -> None:
    model = build(PadBlindStep, "bart", 0)
    with torch.no_grad(), pytest.raises(AssertionError):
        check_padded_prompt(model, "left", [2, 5], 0)


def scaled_queries(model: VariantEncoderDecoder, c: float) -> VariantEncoderDecoder:
    """A copy of ``model`` whose query projections (self and cross, both stacks) are multiplied by ``c``."""
    import copy

    other = copy.deepcopy(model)
    with torch.no_grad():
        for name, param in other.named_parameters():
            if ".w_q." in name:
                param.mul_(c)
    return other


def check_unscaled(model: VariantEncoderDecoder, c: float, seed: int) -> None:
    """Queries times c == scale c on the original weights; and the model is not the 1/sqrt(d) one."""
    cfg = model.config
    src, tgt = ids((2, 4), seed, VOCAB), ids((2, 5), seed + 1, VOCAB)
    torch.manual_seed(0)
    with_scale = VariantEncoderDecoder(replace(cfg, arch=replace(cfg.arch, attn_scale=c))).double().eval()
    with_scale.load_state_dict(model.state_dict())
    assert_close(scaled_queries(model, c)(src, tgt), with_scale(src, tgt), f"queries x {c} vs scale {c}")
    default = VariantEncoderDecoder(replace(cfg, arch=replace(cfg.arch, attn_scale=None))).double().eval()
    default.load_state_dict(model.state_dict())
    assert_differs(model(src, tgt), default(src, tgt), "unscaled vs 1/sqrt(d_head)")


@pytest.mark.claim("scoring.unscaled-t5", "scoring.scale-override")
@FEW
@given(c=st.floats(0.2, 3.0), seed=st.integers(0, 2**16))
def test_t5_scores_are_unscaled(c, seed) -> None:
    with torch.no_grad():
        check_unscaled(build(VariantEncoderDecoder, "t5", seed), c, seed)


@pytest.mark.claim("scoring.unscaled-t5")
def test_unscaled_check_rejects_an_ignored_scale(monkeypatch) -> None:
    def default_scale(q, k, v, keep=None, bias=None, *, mapping="contiguous", scale=None, softcap=None):  # type: ignore[no-untyped-def]
        return grouped_attention(q, k, v, keep, bias, mapping=mapping, scale=None, softcap=softcap)

    from transformer_conformance.reference import variant_encdec

    monkeypatch.setattr(variant_lm, "grouped_attention", default_scale)  # the bug: always 1/sqrt(d)
    monkeypatch.setattr(variant_encdec, "grouped_attention", default_scale)
    with torch.no_grad(), pytest.raises(AssertionError):
        check_unscaled(build(VariantEncoderDecoder, "t5", 0), 2.0, 0)


def check_rescale(model: VariantEncoderDecoder, seed: int) -> None:
    """``head_rescale`` logits == d_model ** -0.5 x the logits without it (same weights)."""
    cfg = model.config
    plain = VariantEncoderDecoder(replace(cfg, arch=replace(cfg.arch, head_rescale=False))).double().eval()
    plain.load_state_dict(model.state_dict())
    src, tgt = ids((2, 4), seed, VOCAB), ids((2, 5), seed + 1, VOCAB)
    assert_close(model(src, tgt), plain(src, tgt) * cfg.d_model**-0.5, "rescaled head")


@pytest.mark.claim("block.head-rescale")
@FEW
@given(seed=st.integers(0, 2**16))
def test_t5_head_rescale(seed) -> None:
    with torch.no_grad():
        check_rescale(build(VariantEncoderDecoder, "t5", seed), seed)


class RescaledTwice(VariantEncoderDecoder):
    """Bug: the rescale applied both in the decoder output and again in the head."""

    def head(self, h):  # type: ignore[no-untyped-def]
        return super().head(h * self.config.d_model**-0.5)


@pytest.mark.claim("block.head-rescale")
def test_rescale_check_rejects_a_double_rescale() -> None:
    with torch.no_grad(), pytest.raises(AssertionError):
        check_rescale(build(RescaledTwice, "t5", 0), 0)
