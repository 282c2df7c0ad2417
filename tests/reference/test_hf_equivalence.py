"""The reference configured as Hugging Face Llama and GPT-NeoX reproduces their logits, cache included.

The transformers models are built offline from tiny configs with random weights (no download) and
their weights are loaded into the reference through the name tables of reference.name_tables.
transformers computes rotary angles in float32 whatever the model dtype, so it is judged as a float32
target by the differential rule: its error against the reference's float64 oracle may be at most a
fixed multiple of the reference's own float32 error on the same input (reference.tolerance).
"""

import copy
import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reference.variant_helpers import ids
from transformer_conformance.reference import name_tables as nt
from transformer_conformance.reference import presets
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.tolerance import differential
from transformer_conformance.reference.variant_lm import VariantLM

transformers = pytest.importorskip("transformers")

VOCAB, D, HEADS, D_FF, LAYERS = 29, 32, 4, 48, 2
FEW = settings(max_examples=6)


def hf_llama(num_kv_heads: int, theta: float, seed: int):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=D,
        intermediate_size=D_FF,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": theta},
        attn_implementation="eager",
    )
    return transformers.LlamaForCausalLM(config).eval()


def hf_neox(fraction: float, seed: int):
    torch.manual_seed(seed)
    config = transformers.GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=D,
        intermediate_size=D_FF,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        max_position_embeddings=64,
        layer_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": fraction},
        hidden_act="gelu",
        use_parallel_residual=True,
        attn_implementation="eager",
    )
    return transformers.GPTNeoXForCausalLM(config).eval()


def reference_pair(config: TransformerConfig, hf, table: nt.NameTable) -> tuple[VariantLM, VariantLM]:
    """The reference in float64 (the oracle) and float32 (the same-dtype baseline), HF's weights loaded."""
    ref = VariantLM(config).eval()
    ref.load_state_dict(nt.to_reference(hf.state_dict(), table, num_layers=LAYERS, num_heads=HEADS))
    return copy.deepcopy(ref).double(), ref


def judge(hf_logits, oracle64, ref32, what: str) -> None:
    result = differential(hf_logits, oracle64, ref32)
    assert result.ok, f"{what}: {result.describe()}"


def check_equivalence(config: TransformerConfig, hf, table: nt.NameTable, length: int, seed: int) -> None:
    """Full forward pass, then a prefill of half the tokens and cached decoding of the rest."""
    oracle, ref32 = reference_pair(config, hf, table)
    tokens = ids((2, length), seed, VOCAB, low=0)
    with torch.no_grad():
        judge(hf(tokens).logits, oracle(tokens), ref32(tokens), "forward")
        prefill = length // 2
        out = hf(tokens[:, :prefill], use_cache=True)
        cache64, cache32 = oracle.new_cache(2), ref32.new_cache(2)
        judge(
            out.logits,
            oracle.step(tokens[:, :prefill], cache64),
            ref32.step(tokens[:, :prefill], cache32),
            "prefill",
        )
        past = out.past_key_values
        for t in range(prefill, length):
            token = tokens[:, t : t + 1]
            out = hf(token, cache=past, use_cache=True)
            past = out.past_key_values
            judge(out.logits, oracle.step(token, cache64), ref32.step(token, cache32), f"cached step {t}")


def llama_config(num_kv_heads: int, theta: float) -> TransformerConfig:
    return presets.llama(
        vocab_size=VOCAB,
        d_model=D,
        num_heads=HEADS,
        num_kv_heads=num_kv_heads,
        d_ff=D_FF,
        num_layers=LAYERS,
        rope_theta=theta,
    )


@pytest.mark.claim("lm.llama-equals-hf")
@FEW
@given(
    kv=st.sampled_from([1, 2, 4]),
    theta=st.sampled_from([10000.0, 500000.0]),
    length=st.integers(2, 9),
    seed=st.integers(0, 2**16),
)
def test_llama_matches_transformers(kv, theta, length, seed) -> None:
    check_equivalence(llama_config(kv, theta), hf_llama(kv, theta, seed), nt.HF_LLAMA, length, seed)


@pytest.mark.claim("lm.llama-equals-hf")
@pytest.mark.parametrize(
    "wrong",
    [{"kv_mapping": "tiled"}, {"rope_layout": "interleaved"}, {"norm_offset": True}, {"activation": "gelu"}],
)
def test_llama_check_rejects_a_wrong_declaration(wrong) -> None:
    config = llama_config(2, 10000.0)
    config = dataclasses.replace(config, arch=dataclasses.replace(config.arch, **wrong))
    with pytest.raises(AssertionError):
        check_equivalence(config, hf_llama(2, 10000.0, 0), nt.HF_LLAMA, 6, 0)


def neox_config(fraction: float, **arch) -> TransformerConfig:
    config = presets.gpt_neox(
        vocab_size=VOCAB, d_model=D, num_heads=HEADS, d_ff=D_FF, num_layers=LAYERS, rope_fraction=fraction
    )
    return dataclasses.replace(config, arch=dataclasses.replace(config.arch, **arch))


@pytest.mark.claim("lm.neox-equals-hf")
@FEW
@given(fraction=st.sampled_from([0.25, 0.5, 1.0]), length=st.integers(2, 9), seed=st.integers(0, 2**16))
def test_neox_matches_transformers(fraction, length, seed) -> None:
    check_equivalence(neox_config(fraction), hf_neox(fraction, seed), nt.HF_GPT_NEOX, length, seed)


@pytest.mark.claim("lm.neox-equals-hf")
@pytest.mark.parametrize(
    "wrong", [{"block": "sequential"}, {"rope_fraction": 1.0}, {"rope_layout": "interleaved"}]
)
def test_neox_check_rejects_a_wrong_declaration(wrong) -> None:
    with pytest.raises(AssertionError):
        check_equivalence(neox_config(0.5, **wrong), hf_neox(0.5, 0), nt.HF_GPT_NEOX, 6, 0)


@pytest.mark.claim("lm.neox-equals-hf")
def test_fused_qkv_round_trip_and_layout() -> None:
    hf = hf_neox(0.5, 0)
    state = hf.state_dict()
    ref = nt.to_reference(state, nt.HF_GPT_NEOX, num_layers=LAYERS, num_heads=HEADS)
    back = nt.from_reference(ref, nt.HF_GPT_NEOX, num_layers=LAYERS, num_heads=HEADS)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
    fused = state["gpt_neox.layers.0.attention.query_key_value.weight"]
    d_head = D // HEADS
    assert torch.equal(ref["layers.0.attn.w_k.weight"][:d_head], fused[d_head : 2 * d_head]), (
        "head 0's key rows"
    )


@pytest.mark.claim("lm.llama-equals-hf")
def test_name_table_refuses_missing_and_unmapped_tensors() -> None:
    state = hf_llama(2, 10000.0, 0).state_dict()
    missing = {k: v for k, v in state.items() if k != "model.norm.weight"}
    with pytest.raises(ValueError, match=r"model\.norm\.weight"):
        nt.to_reference(missing, nt.HF_LLAMA, num_layers=LAYERS, num_heads=HEADS)
    with pytest.raises(ValueError, match=r"extra\.weight"):
        nt.to_reference(
            {**state, "extra.weight": torch.zeros(1)}, nt.HF_LLAMA, num_layers=LAYERS, num_heads=HEADS
        )


def hf_mistral(window: int, seed: int):
    torch.manual_seed(seed)
    config = transformers.MistralConfig(
        vocab_size=VOCAB,
        hidden_size=D,
        intermediate_size=D_FF,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        sliding_window=window,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        attn_implementation="eager",
    )
    return transformers.MistralForCausalLM(config).eval()


def mistral_config(window: int | None) -> TransformerConfig:
    config = llama_config(2, 10000.0)
    return dataclasses.replace(config, arch=dataclasses.replace(config.arch, sliding_window=window))


@pytest.mark.claim("lm.mistral-equals-hf", "window.blind-outside", "window.cache-drop")
@FEW
@given(window=st.integers(2, 6), length=st.integers(2, 10), seed=st.integers(0, 2**16))
def test_mistral_matches_transformers(window, length, seed) -> None:
    # Window 1 is left out: in transformers 5.24 a MistralForCausalLM with sliding_window=1 decodes with
    # its cache differently from its own full forward pass (DynamicSlidingWindowLayer keeps
    # keys[:, :, -sliding_window + 1:], i.e. [0:], every key instead of none), while its full forward
    # pass agrees with the reference.
    check_equivalence(mistral_config(window), hf_mistral(window, seed), nt.HF_LLAMA, length, seed)


@pytest.mark.claim("lm.mistral-equals-hf")
@pytest.mark.parametrize("declared", [4, 2, None])
def test_mistral_check_rejects_a_wrong_window(declared) -> None:
    with pytest.raises(AssertionError):
        check_equivalence(mistral_config(declared), hf_mistral(3, 0), nt.HF_LLAMA, 8, 0)


@pytest.mark.claim("lm.mistral-equals-hf", "window.blind-outside")
def test_window_one_forward_matches_transformers() -> None:
    """Window 1 (each query sees only itself): the full forward pass agrees with transformers."""
    hf = hf_mistral(1, 0)
    oracle, ref32 = reference_pair(mistral_config(1), hf, nt.HF_LLAMA)
    tokens = ids((2, 7), 0, VOCAB, low=0)
    with torch.no_grad():
        judge(hf(tokens).logits, oracle(tokens), ref32(tokens), "forward, window 1")
