"""TransformerConfig: the base defaults, the tiny test sizes, and validation that names the bad field."""

import dataclasses

import pytest

from transformer_conformance.reference.checking import ReferenceInputError
from transformer_conformance.reference.config import TransformerConfig


@pytest.mark.claim("sizes.base", "sizes.vocab", "mha.concat-width")
def test_defaults_are_the_base_model():
    c = TransformerConfig()
    assert (c.d_model, c.num_heads, c.d_ff, c.num_layers, c.vocab_size) == (512, 8, 2048, 6, 37000)
    assert c.d_head == 64 and c.d_head * c.num_heads == c.d_model
    assert (c.norm_placement, c.layout, c.positional, c.eps, c.dropout) == (
        "post",
        "interleaved",
        "sinusoidal",
        1e-5,
        0.0,
    )


def test_tiny_sizes_and_overrides():
    t = TransformerConfig.tiny()
    assert (t.vocab_size, t.d_model, t.num_heads, t.d_ff, t.num_layers) == (23, 16, 4, 32, 2)
    assert t.d_head == 4
    o = TransformerConfig.tiny(norm_placement="pre", num_layers=3, positional="learned")
    assert (o.norm_placement, o.num_layers, o.positional, o.d_model) == ("pre", 3, "learned", 16)
    with pytest.raises(ReferenceInputError, match="overrides"):
        TransformerConfig.tiny(d_modle=8)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TransformerConfig().d_model = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"d_model": 18}, "d_model"),  # 18 is not a multiple of 4 heads
        ({"d_model": 0}, "d_model"),
        ({"num_heads": -1}, "num_heads"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"d_ff": 0}, "d_ff"),
        ({"num_layers": 0}, "num_layers"),
        ({"max_len": 0}, "max_len"),
        ({"positional": "rotary"}, "positional"),
        ({"layout": "mixed"}, "layout"),
        ({"norm_placement": "sandwich"}, "norm_placement"),
        ({"eps": 0.0}, "eps"),
        ({"eps": float("nan")}, "eps"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"pad_id": 23}, "pad_id"),
        ({"bos_id": -1}, "bos_id"),
        ({"eos_id": 99}, "eos_id"),
        ({"activation": "swish"}, "activation"),
        ({"num_layers": 2.0}, "num_layers"),
        ({"d_model": 9, "num_heads": 3}, "d_model"),  # sinusoidal positions need an even width
    ],
)
def test_invalid_fields_raise_naming_the_field(overrides, field):
    with pytest.raises(ReferenceInputError) as info:
        TransformerConfig.tiny(**overrides)
    message = str(info.value)
    assert f"'{field}'" in message and "expected" in message and "got" in message, message


def test_d_model_not_divisible_names_both_sizes():
    with pytest.raises(ReferenceInputError, match=r"d_model.*num_heads=4.*18"):
        TransformerConfig.tiny(d_model=18)


def test_learned_positions_allow_odd_width():
    assert TransformerConfig.tiny(d_model=9, num_heads=3, positional="learned").d_head == 3
