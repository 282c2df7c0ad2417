"""T5's attention pieces against transformers: causal relative-bucket bias, unscaled scores, T5LayerNorm.

A decoder self-attention layer of transformers' T5 (random weights, float64) against the reference's
``RelativePositionBias`` (bidirectional=False) and ``grouped_attention`` with ``scale=1``, and T5's norm
against ``rms_norm``. The whole T5 is an encoder-decoder, outside ``VariantLM``; these are its parts.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reference.variant_helpers import rand
from transformer_conformance.reference.grouped import grouped_attention, window_keep
from transformer_conformance.reference.multihead import merge_heads, split_heads
from transformer_conformance.reference.relative_bias import RelativePositionBias
from transformer_conformance.reference.rmsnorm import rms_norm
from transformer_conformance.reference.tolerance import assert_close

t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
transformers = pytest.importorskip("transformers")
FEW = settings(max_examples=8)


def t5_decoder_attention(seed: int):
    torch.manual_seed(seed)
    config = transformers.T5Config(
        d_model=16,
        d_kv=4,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=20,
        is_decoder=True,
        dropout_rate=0.0,
        attn_implementation="eager",
    )
    return (
        t5.T5Attention(config, has_relative_attention_bias=True, is_causal=True, layer_idx=0).eval().double()
    )


def reference_attention(att, x, scale: float):
    bias_module = RelativePositionBias(4, bidirectional=False, num_buckets=8, max_distance=20).double()
    bias_module.weight.data.copy_(att.relative_attention_bias.weight)
    pos = torch.arange(x.shape[1])
    q, k, v = (split_heads(x @ layer.weight.T, 4) for layer in (att.q, att.k, att.v))
    heads, _ = grouped_attention(
        q, k, v, window_keep(pos, pos)[None, None], bias_module(pos, pos)[None], scale=scale
    )
    return merge_heads(heads) @ att.o.weight.T


def check_t5_attention(att, x, scale: float) -> None:
    length = x.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    mask = torch.zeros(1, 1, length, length, dtype=torch.float64).masked_fill(~causal, float("-inf"))
    with torch.no_grad():
        assert_close(att(x, mask=mask)[0], reference_attention(att, x, scale), "T5 decoder self-attention")


@pytest.mark.claim("relbias.buckets", "relbias.distance-only", "scoring.scale-override")
@FEW
@given(length=st.integers(1, 30), seed=st.integers(0, 2**16))
def test_t5_decoder_self_attention_matches_transformers(length, seed) -> None:
    check_t5_attention(t5_decoder_attention(seed), rand((2, length, 16), seed), scale=1.0)


@pytest.mark.claim("scoring.scale-override")
def test_t5_check_rejects_the_default_scale() -> None:
    with pytest.raises(AssertionError):
        check_t5_attention(t5_decoder_attention(0), rand((2, 6, 16), 0), scale=0.5)


@pytest.mark.claim("rmsnorm.formula")
@given(d=st.integers(2, 16), seed=st.integers(0, 2**16))
def test_t5_layer_norm_is_rms_norm(d, seed) -> None:
    """T5LayerNorm takes its statistics in float32 whatever the dtype: judged as a float32 target."""
    norm = t5.T5LayerNorm(d, eps=1e-6)
    weight, x = rand((d,), seed + 1), rand((2, 3, d), seed, 3.0)
    norm.weight.data.copy_(weight)
    with torch.no_grad():
        assert_close(norm(x.float()), rms_norm(x, weight, 1e-6), "T5LayerNorm (float32)")
