"""The Hugging Face GPT-2 name table (fused ``c_attn``, transposed ``Conv1D``) is data that round-trips:
a GPT2LMHeadModel's weights loaded into the reference (notes' architecture, pre-LN, learned positions,
exact GELU) give its logits within the tolerance policy, and the reference's weights map back exactly."""

import pytest
import torch

from tests.reference.variant_helpers import ids
from transformer_conformance.reference import name_tables as nt
from transformer_conformance.reference.checking import ReferenceInputError
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.tolerance import differential
from transformer_conformance.reference.variant_lm import VariantLM

transformers = pytest.importorskip("transformers")

VOCAB, D, HEADS, D_FF, LAYERS, MAX_LEN = 29, 32, 4, 48, 2, 16


def gpt2(seed: int):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=MAX_LEN, n_embd=D, n_layer=LAYERS, n_head=HEADS, n_inner=D_FF,
        activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config).eval()


def reference_config() -> TransformerConfig:
    return TransformerConfig(
        vocab_size=VOCAB, d_model=D, num_heads=HEADS, d_ff=D_FF, num_layers=LAYERS, max_len=MAX_LEN,
        positional="learned", norm_placement="pre", activation="gelu",
    )  # fmt: skip


@pytest.mark.claim("mha.fused-equals-per-head", "arch.notes-default")
@pytest.mark.parametrize("seed", [0, 1])
def test_gpt2_through_its_name_table_equals_the_reference(seed) -> None:
    hf = gpt2(seed)
    ref = VariantLM(reference_config()).eval()
    state = nt.to_reference(hf.state_dict(), nt.HF_GPT2, num_layers=LAYERS, num_heads=HEADS)
    ref.load_state_dict(state)
    oracle = VariantLM(reference_config()).double().eval()
    oracle.load_state_dict({k: v.double() for k, v in state.items()})
    tokens = ids((2, 7), seed, VOCAB, low=0)
    with torch.no_grad():
        result = differential(hf(tokens).logits, oracle(tokens), ref(tokens))
    assert result.ok, result.describe()
    back = nt.from_reference(ref.state_dict(), nt.HF_GPT2, num_layers=LAYERS, num_heads=HEADS)
    for name, tensor in back.items():
        assert torch.equal(tensor, hf.state_dict()[name]), name


@pytest.mark.claim("mha.fused-equals-per-head")
def test_gpt2_table_rejects_plain_concat_for_the_transposed_fused_weight() -> None:
    """A table that splits ``c_attn.weight`` without the transpose maps the wrong rows: the logits move."""
    wrong_rules = tuple(
        (src, dst, "qkv_concat" if t == "qkv_concat_transposed" else t) for src, dst, t in nt.HF_GPT2.rules
    )
    wrong = nt.NameTable("GPT-2 without the transpose", wrong_rules, nt.HF_GPT2.ignore)
    hf = gpt2(0)
    with pytest.raises((RuntimeError, ReferenceInputError)):  # [d, 3d] split by rows: shapes no longer fit
        ref = VariantLM(reference_config()).eval()
        ref.load_state_dict(nt.to_reference(hf.state_dict(), wrong, num_layers=LAYERS, num_heads=HEADS))
