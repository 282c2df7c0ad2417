"""Bad input to the position-wise and output functions raises a clear error naming the argument.

Each row: a call, the error types accepted (``ReferenceInputError`` is a ValueError; jaxtyping's
``TypeCheckError`` is a TypeError), and text the message must contain (argument name, expected or
actual value). Rows that only the jaxtyping layer catches are skipped when checks are disabled.
"""

from collections.abc import Callable
from typing import Any

import pytest
import torch

from tests.reference.bad_input import EITHER, SHAPE, VALUE, assert_clear_error, case_params
from transformer_conformance.reference.embedding import OutputProjection, TokenEmbedding, one_hot_embed
from transformer_conformance.reference.ffn import PositionWiseFFN
from transformer_conformance.reference.layernorm import LayerNorm, batch_norm_train, layer_norm
from transformer_conformance.reference.loss import next_token_loss
from transformer_conformance.reference.positional import (
    LearnedPositionalEncoding,
    binary_positions,
    shift_matrix,
    sinusoidal_encoding,
)
from transformer_conformance.reference.sampling import sample_next, sampling_distribution
from transformer_conformance.reference.sublayer import residual_sublayer

META = torch.device("meta")


def f32(*shape: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.zeros(*shape, device=device)


def ids(*shape: int, device: torch.device | str = "cpu") -> torch.Tensor:
    # A factory call only: the first real operation on a meta tensor costs seconds of lazy imports.
    return torch.ones(*shape, dtype=torch.long, device=device)


Case = tuple[str, Callable[[], Any], tuple[type[BaseException], ...], list[str]]

CASES: list[Case] = [
    # positional
    ("sinusoidal-odd-width", lambda: sinusoidal_encoding(4, 7), VALUE, ["'d_model'", "even", "7"]),
    ("sinusoidal-negative-offset", lambda: sinusoidal_encoding(4, 8, offset=-1), VALUE, ["'offset'", "-1"]),
    ("sinusoidal-negative-length", lambda: sinusoidal_encoding(-2, 8), VALUE, ["'num_positions'", "-2"]),
    ("sinusoidal-bad-layout", lambda: sinusoidal_encoding(4, 8, layout="blocks"), EITHER, ["layout"]),  # type: ignore[arg-type]
    (
        "sinusoidal-int-dtype",
        lambda: sinusoidal_encoding(4, 8, dtype=torch.int64),
        VALUE,
        ["'dtype'", "int64"],
    ),
    ("sinusoidal-base-one", lambda: sinusoidal_encoding(4, 8, base=1.0), VALUE, ["'base'", "1.0"]),
    ("shift-odd-width", lambda: shift_matrix(1, 5), VALUE, ["'d_model'", "5"]),
    (
        "learned-too-long",
        lambda: LearnedPositionalEncoding(1024, 4)(1025),
        VALUE,
        ["'length'", "1024", "1025"],
    ),
    (
        "learned-offset-too-far",
        lambda: LearnedPositionalEncoding(16, 4)(4, offset=13),
        VALUE,
        ["'length'", "16", "offset 13"],
    ),
    (
        "learned-negative-offset",
        lambda: LearnedPositionalEncoding(16, 4)(4, offset=-1),
        VALUE,
        ["'offset'", "-1"],
    ),
    ("binary-too-many-positions", lambda: binary_positions(17, 4), VALUE, ["'n'", "16", "17"]),
    # embedding and output
    ("embed-id-too-large", lambda: TokenEmbedding(5, 4)(ids(2, 3) * 5), VALUE, ["'ids'", "[0, 5)", "5"]),
    ("embed-negative-id", lambda: TokenEmbedding(5, 4)(-ids(2, 3)), VALUE, ["'ids'", "[0, 5)", "-1"]),
    ("embed-float-ids", lambda: TokenEmbedding(5, 4)(f32(2, 3)), EITHER, ["ids"]),
    ("embed-1d-ids", lambda: TokenEmbedding(5, 4)(ids(3)), SHAPE, ["ids"]),
    ("embed-meta-ids", lambda: TokenEmbedding(5, 4)(ids(2, 3, device=META)), VALUE, ["'ids'", "meta", "cpu"]),
    ("one-hot-id-too-large", lambda: one_hot_embed(ids(2) * 9, f32(5, 4)), VALUE, ["'ids'", "[0, 5)", "9"]),
    ("one-hot-1d-weight", lambda: one_hot_embed(ids(2), f32(5)), SHAPE, ["weight"]),
    ("projection-wrong-width", lambda: OutputProjection(4, 7)(f32(2, 3, 5)), SHAPE, ["x"]),
    ("projection-int-input", lambda: OutputProjection(4, 7)(ids(2, 3, 4)), EITHER, ["x"]),
    ("projection-meta-input", lambda: OutputProjection(4, 7)(f32(2, 4, device=META)), VALUE, ["'x'", "meta"]),
    (
        "tie-wrong-shape",
        lambda: OutputProjection(4, 7, tied_to=TokenEmbedding(6, 4)),
        VALUE,
        ["'tied_to'", "(6, 4)"],
    ),
    ("embed-zero-vocab", lambda: TokenEmbedding(0, 4), VALUE, ["vocab_size", "0"]),
    # layer norm
    ("ln-weight-wrong-width", lambda: layer_norm(f32(2, 5), f32(4), None), SHAPE, ["weight"]),
    ("ln-int-input", lambda: layer_norm(ids(2, 5), None, None), EITHER, ["x"]),
    ("ln-negative-eps", lambda: layer_norm(f32(2, 5), None, None, -1e-5), VALUE, ["'eps'", "-1e-05"]),
    ("ln-mixed-dtypes", lambda: layer_norm(f32(2, 5), f32(5).double(), None), VALUE, ["'x'", "float64"]),
    ("ln-meta-weight", lambda: layer_norm(f32(2, 5), f32(5, device=META), None), VALUE, ["'x'", "meta"]),
    ("ln-module-wrong-width", lambda: LayerNorm(6)(f32(2, 5)), SHAPE, ["x"]),
    ("ln-module-meta-input", lambda: LayerNorm(5)(f32(2, 5, device=META)), VALUE, ["meta"]),
    ("bn-2d-input", lambda: batch_norm_train(f32(2, 5)), SHAPE, ["x"]),
    # ffn and residual
    ("ffn-wrong-width", lambda: PositionWiseFFN(4, 8)(f32(2, 3, 5)), SHAPE, ["x"]),
    ("ffn-bad-activation", lambda: PositionWiseFFN(4, 8, activation="tanh"), EITHER, ["activation"]),  # type: ignore[arg-type]
    ("ffn-meta-input", lambda: PositionWiseFFN(4, 8)(f32(2, 3, 4, device=META)), VALUE, ["'x'", "meta"]),
    (
        "residual-shape-changing-sublayer",
        lambda: residual_sublayer(f32(2, 3, 4), lambda h: h[..., :2], LayerNorm(4)),
        VALUE,
        ["'sublayer'", "(2, 3, 4)", "(2, 3, 2)"],
    ),
    # loss
    ("loss-all-pad", lambda: next_token_loss(f32(2, 3, 5), ids(2, 3) * 0, pad_id=0), VALUE, ["'ids'", "pad"]),
    (
        "loss-length-one",
        lambda: next_token_loss(f32(2, 1, 5), ids(2, 1), pad_id=None),
        VALUE,
        ["'ids'", "length"],
    ),
    (
        "loss-target-out-of-vocab",
        lambda: next_token_loss(f32(1, 3, 5), ids(1, 3) * 7, pad_id=0),
        VALUE,
        ["'ids'", "[0, 5)"],
    ),
    ("loss-ids-shape-mismatch", lambda: next_token_loss(f32(2, 3, 5), ids(2, 4), pad_id=0), SHAPE, ["ids"]),
    ("loss-float-ids", lambda: next_token_loss(f32(2, 3, 5), f32(2, 3), pad_id=0), SHAPE, ["ids"]),
    (
        "loss-meta-ids",
        lambda: next_token_loss(f32(2, 3, 5), ids(2, 3, device=META), pad_id=0),
        VALUE,
        ["meta"],
    ),
    # sampling
    (
        "sample-negative-temperature",
        lambda: sample_next(f32(2, 5), temperature=-0.5),
        VALUE,
        ["'temperature'", "-0.5"],
    ),
    (
        "sample-nan-temperature",
        lambda: sample_next(f32(2, 5), temperature=float("nan")),
        VALUE,
        ["'temperature'", "nan"],
    ),
    (
        "sample-inf-temperature",
        lambda: sample_next(f32(2, 5), temperature=float("inf")),
        VALUE,
        ["'temperature'", "inf"],
    ),
    ("sample-nan-logits", lambda: sample_next(f32(2, 5) / 0.0, temperature=1.0), VALUE, ["'logits'", "NaN"]),
    ("sample-3d-logits", lambda: sample_next(f32(2, 3, 5), temperature=1.0), SHAPE, ["logits"]),
    (
        "sample-generator-on-other-device",
        lambda: sample_next(f32(2, 5, device=META), temperature=1.0, generator=torch.Generator()),
        VALUE,
        ["'generator'", "meta"],
    ),
    (
        "distribution-negative-temperature",
        lambda: sampling_distribution(f32(5), -1.0),
        VALUE,
        ["'temperature'"],
    ),
]


@pytest.mark.parametrize(("call", "errors", "needles"), case_params(CASES))
def test_bad_input_raises_clear_error(
    call: Callable[[], Any], errors: tuple[type[BaseException], ...], needles: list[str]
) -> None:
    assert_clear_error(call, errors, needles)


@pytest.mark.claim("sampling.temperature-limits")
@pytest.mark.parametrize("temperature", [1e-30, 1e-45, 1e-300])
def test_tiny_positive_temperature_is_greedy_not_nan(temperature: float) -> None:
    """A tiny T > 0 (below float32's range) is the T -> 0 limit: the argmax, never NaN or a torch error."""
    logits = torch.tensor([[0.5, 2.0, -1.0, 1.5], [3.0, -2.0, 0.0, 2.5]])
    probs = sampling_distribution(logits, temperature)
    assert torch.equal(probs, torch.nn.functional.one_hot(logits.argmax(-1), 4).float())
    assert torch.equal(sample_next(logits, temperature=temperature), logits.argmax(-1))
