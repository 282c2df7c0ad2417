"""The reference encoder / encoder-decoder configured as BERT, BART and T5 reproduces transformers' models.

The transformers models are built offline from tiny configs with random weights (no download), run in
float32, and their weights are loaded into the reference through the name tables; each output is
judged by the differential rule against the reference's float64 oracle and its float32 copy.
"""

import copy
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reference.variant_helpers import ids
from transformer_conformance.reference import name_tables as nt
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.tolerance import differential
from transformer_conformance.reference.variant_encdec import VariantEncoder, VariantEncoderDecoder

transformers = pytest.importorskip("transformers")

VOCAB, D, HEADS, D_FF, LAYERS = 29, 16, 4, 32, 2
FEW = settings(max_examples=4, deadline=None)
BERT = Architecture(activation="gelu", embed_norm=True)
BART = Architecture(activation="gelu", embed_norm=True, position_offset=2, shared_embeddings=True)
T5 = Architecture(
    positions="relative",
    relative_buckets=8,
    relative_max_distance=20,
    norm="rmsnorm",
    activation="relu",
    ffn_bias=False,
    qkv_bias=False,
    out_bias=False,
    attn_scale=1.0,
    shared_embeddings=True,
    head_rescale=True,
)
SIZES = {
    "vocab_size": VOCAB,
    "d_model": D,
    "num_heads": HEADS,
    "d_ff": D_FF,
    "num_layers": LAYERS,
    "max_len": 64,
}


def hf_bert(seed: int):
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=D,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=D_FF,
        max_position_embeddings=64,
        layer_norm_eps=1e-12,
        attn_implementation="eager",
    )
    model = transformers.BertModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():
        model.embeddings.token_type_embeddings.weight.zero_()
    return model


def hf_bart(seed: int):
    torch.manual_seed(seed)
    config = transformers.BartConfig(
        vocab_size=VOCAB,
        d_model=D,
        encoder_layers=LAYERS,
        decoder_layers=LAYERS,
        encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS,
        encoder_ffn_dim=D_FF,
        decoder_ffn_dim=D_FF,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    return transformers.BartForConditionalGeneration(config).eval()


def hf_t5(seed: int):
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=VOCAB,
        d_model=D,
        d_kv=D // HEADS,
        d_ff=D_FF,
        num_layers=LAYERS,
        num_decoder_layers=LAYERS,
        num_heads=HEADS,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=20,
        attn_implementation="eager",
    )
    return transformers.T5ForConditionalGeneration(config).eval()


def bert_config(**arch) -> TransformerConfig:
    return TransformerConfig.tiny(**SIZES, positional="learned", eps=1e-12, arch=replace(BERT, **arch))


def bart_config(**arch) -> TransformerConfig:
    return TransformerConfig.tiny(
        **SIZES, positional="learned", tie_embeddings=True, arch=replace(BART, **arch)
    )


def t5_config(**arch) -> TransformerConfig:
    return TransformerConfig.tiny(
        **SIZES, norm_placement="pre", eps=1e-6, tie_embeddings=True, arch=replace(T5, **arch)
    )


def pair(cls: type, config: TransformerConfig, hf, table: nt.NameTable):  # type: ignore[no-untyped-def]
    ref = cls(config).eval()
    ref.load_state_dict(nt.to_reference(hf.state_dict(), table, num_layers=LAYERS, num_heads=HEADS))
    return copy.deepcopy(ref).double(), ref


def judge(actual, oracle, same, what: str, keep=None) -> None:  # type: ignore[no-untyped-def]
    if keep is not None:
        actual, oracle, same = actual[keep], oracle[keep], same[keep]
    result = differential(actual, oracle, same)
    assert result.ok, f"{what}: {result.describe()}"


def padding(lengths: list[int], n: int) -> torch.Tensor:
    return torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]


def check_bert(config: TransformerConfig, hf, lengths: list[int], seed: int) -> None:  # type: ignore[no-untyped-def]
    oracle, same = pair(VariantEncoder, config, hf, nt.HF_BERT)
    n = max(lengths)
    tokens, keep = ids((len(lengths), n), seed, VOCAB), padding(lengths, n)
    with torch.no_grad():
        got = hf(input_ids=tokens, attention_mask=keep.long()).last_hidden_state
        judge(got, oracle(tokens, keep), same(tokens, keep), "BERT hidden states", keep)


def check_seq2seq(config: TransformerConfig, hf, table: nt.NameTable, lengths: list[int], seed: int) -> None:  # type: ignore[no-untyped-def]
    """Teacher forcing against a padded source, then a prefill of 2 and cached single tokens."""
    oracle, same = pair(VariantEncoderDecoder, config, hf, table)
    b, n, t = len(lengths), max(lengths), 5
    src, tgt, src_pad = ids((b, n), seed, VOCAB), ids((b, t), seed + 1, VOCAB), padding(lengths, n)
    with torch.no_grad():
        memory = hf.get_encoder()(input_ids=src, attention_mask=src_pad.long()).last_hidden_state
        encoded = transformers.modeling_outputs.BaseModelOutput(last_hidden_state=memory)
        got = hf(encoder_outputs=encoded, attention_mask=src_pad.long(), decoder_input_ids=tgt).logits
        judge(got, oracle(src, tgt, src_pad), same(src, tgt, src_pad), "teacher-forced logits")
        mem64, mem32 = oracle.encode(src, src_pad), same.encode(src, src_pad)
        c64, c32 = oracle.new_cache(b), same.new_cache(b)
        cache = transformers.EncoderDecoderCache(transformers.DynamicCache(), transformers.DynamicCache())
        for start, stop in ((0, 2), (2, 3), (3, 4), (4, 5)):
            chunk = tgt[:, start:stop]
            out = hf(
                encoder_outputs=encoded,
                attention_mask=src_pad.long(),
                decoder_input_ids=chunk,
                cache=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            want = oracle.step(chunk, mem64, c64, src_pad)
            judge(out.logits, want, same.step(chunk, mem32, c32, src_pad), f"cached step {start}..{stop - 1}")


LENGTHS = st.lists(st.integers(1, 6), min_size=1, max_size=3)


@pytest.mark.claim("encoder.bert-equals-hf")
@pytest.mark.slow
@FEW
@given(lengths=LENGTHS, seed=st.integers(0, 2**16))
def test_bert_matches_transformers(lengths, seed) -> None:
    check_bert(bert_config(), hf_bert(seed), lengths, seed)


@pytest.mark.claim("encoder.bert-equals-hf")
@pytest.mark.parametrize("wrong", [{"activation": "relu"}, {"attn_scale": 1.0}])
def test_bert_check_rejects_a_wrong_declaration(wrong) -> None:
    with pytest.raises(AssertionError):
        check_bert(bert_config(**wrong), hf_bert(0), [6, 3], 0)


@pytest.mark.claim("encdec.bart-equals-hf")
@pytest.mark.slow
@FEW
@given(lengths=LENGTHS, seed=st.integers(0, 2**16))
def test_bart_matches_transformers(lengths, seed) -> None:
    check_seq2seq(bart_config(), hf_bart(seed), nt.HF_BART, lengths, seed)


@pytest.mark.claim("encdec.bart-equals-hf")
def test_bart_check_rejects_positions_without_the_offset() -> None:
    hf = hf_bart(0)
    state = hf.state_dict()
    config = bart_config(position_offset=0)
    # the same tables read from row 0: the reference loads the first max_len rows
    with pytest.raises(AssertionError):
        oracle = VariantEncoderDecoder(config).eval()
        mapped = nt.to_reference(state, nt.HF_BART, num_layers=LAYERS, num_heads=HEADS)
        mapped = {k: v[:64] if "pos_embed" in k else v for k, v in mapped.items()}
        oracle.load_state_dict(mapped)
        src, tgt = ids((2, 4), 0, VOCAB), ids((2, 5), 1, VOCAB)
        with torch.no_grad():
            got = hf(input_ids=src, decoder_input_ids=tgt).logits
            judge(got, copy.deepcopy(oracle).double()(src, tgt), oracle(src, tgt), "offset 0")


@pytest.mark.claim("encdec.t5-equals-hf", "scoring.unscaled-t5", "block.head-rescale", "relbias.buckets")
@pytest.mark.slow
@FEW
@given(lengths=LENGTHS, seed=st.integers(0, 2**16))
def test_t5_matches_transformers(lengths, seed) -> None:
    check_seq2seq(t5_config(), hf_t5(seed), nt.HF_T5, lengths, seed)


@pytest.mark.claim("encdec.t5-equals-hf", "scoring.unscaled-t5", "block.head-rescale")
@pytest.mark.parametrize("wrong", [{"attn_scale": None}, {"head_rescale": False}])
def test_t5_check_rejects_a_wrong_declaration(wrong) -> None:
    with pytest.raises(AssertionError):
        check_seq2seq(t5_config(**wrong), hf_t5(0), nt.HF_T5, [4, 2], 0)
