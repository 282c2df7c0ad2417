"""Bad input to the variant components raises a clear error naming the argument.

Rows as in test_bad_input_pointwise: a call, the accepted error types, and text the message must contain.
"""

from collections.abc import Callable
from typing import Any

import pytest
import torch

from tests.reference.bad_input import EITHER, SHAPE, VALUE, assert_clear_error, case_params
from transformer_conformance.reference.alibi import alibi_slopes
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.gated_ffn import FeedForward, activate
from transformer_conformance.reference.grouped import grouped_attention, repeat_kv, window_keep
from transformer_conformance.reference.relative_bias import relative_bucket
from transformer_conformance.reference.rmsnorm import rms_norm
from transformer_conformance.reference.rotary import apply_rotary
from transformer_conformance.reference.variant_encdec import VariantEncoder, VariantEncoderDecoder
from transformer_conformance.reference.variant_lm import VariantLM


def f32(*shape: int) -> torch.Tensor:
    return torch.zeros(*shape)


def lm(**arch: Any) -> VariantLM:
    return VariantLM(TransformerConfig.tiny(arch=Architecture(**arch)))


CASES: list[tuple[str, Callable[[], Any], tuple[type[BaseException], ...], list[str]]] = [
    (
        "rope-odd-width",
        lambda: apply_rotary(f32(1, 1, 2, 6), torch.arange(2), fraction=0.5),
        VALUE,
        ["fraction"],
    ),
    (
        "rope-bad-layout",
        lambda: apply_rotary(f32(1, 1, 2, 4), torch.arange(2), layout="pairs"),
        EITHER,
        ["layout"],
    ),
    (
        "rope-int-input",
        lambda: apply_rotary(torch.zeros(1, 1, 2, 4, dtype=torch.long), torch.arange(2)),
        EITHER,
        ["x"],
    ),
    ("rope-positions-length", lambda: apply_rotary(f32(1, 1, 2, 4), torch.arange(3)), SHAPE, ["positions"]),
    ("alibi-zero-heads", lambda: alibi_slopes(0), VALUE, ["'num_heads'", "0"]),
    (
        "buckets-too-few",
        lambda: relative_bucket(torch.arange(3), bidirectional=True, num_buckets=2),
        VALUE,
        ["'num_buckets'"],
    ),
    (
        "buckets-short-distance",
        lambda: relative_bucket(torch.arange(3), bidirectional=False, num_buckets=8, max_distance=4),
        VALUE,
        ["'max_distance'"],
    ),
    ("rmsnorm-negative-eps", lambda: rms_norm(f32(2, 4), None, -1.0), VALUE, ["'eps'"]),
    ("rmsnorm-int-input", lambda: rms_norm(torch.zeros(2, 4, dtype=torch.long)), EITHER, ["x"]),
    ("activation-unknown", lambda: activate(f32(3), "swish"), VALUE, ["'activation'", "swish"]),
    ("ffn-zero-width", lambda: FeedForward(4, 0), VALUE, ["d_ff"]),
    (
        "repeat-kv-not-dividing",
        lambda: repeat_kv(f32(1, 3, 2, 4), 4),
        VALUE,
        ["'num_heads'", "num_kv_heads = 3"],
    ),
    ("repeat-kv-bad-mapping", lambda: repeat_kv(f32(1, 2, 2, 4), 4, "spread"), EITHER, ["mapping"]),
    ("window-zero", lambda: window_keep(torch.arange(3), torch.arange(3), 0), VALUE, ["'window'"]),
    (
        "gqa-dtype-mismatch",
        lambda: grouped_attention(f32(1, 2, 2, 4), f32(1, 1, 2, 4).double(), f32(1, 1, 2, 4)),
        VALUE,
        ["dtype"],
    ),
    (
        "gqa-negative-scale",
        lambda: grouped_attention(f32(1, 2, 2, 4), f32(1, 1, 2, 4), f32(1, 1, 2, 4), scale=-1.0),
        VALUE,
        ["'scale'"],
    ),
    (
        "gqa-zero-cap",
        lambda: grouped_attention(f32(1, 2, 2, 4), f32(1, 1, 2, 4), f32(1, 1, 2, 4), softcap=0.0),
        VALUE,
        ["'softcap'"],
    ),
    (
        "arch-kv-heads",
        lambda: TransformerConfig.tiny(arch=Architecture(num_kv_heads=3)),
        VALUE,
        ["'arch.num_kv_heads'", "num_heads = 4", "3"],
    ),
    ("arch-window", lambda: Architecture(sliding_window=0), VALUE, ["'arch.sliding_window'"]),
    ("arch-shared-norm-sequential", lambda: Architecture(shared_norm=True), VALUE, ["'arch.shared_norm'"]),
    ("arch-unknown-norm", lambda: Architecture(norm="batchnorm"), VALUE, ["'arch.norm'", "batchnorm"]),  # type: ignore[arg-type]
    ("lm-parallel-post", lambda: lm(block="parallel"), VALUE, ["'config.norm_placement'"]),
    (
        "lm-step-wrong-cache",
        lambda: lm().step(
            torch.ones(1, 2, dtype=torch.long), VariantLM(TransformerConfig.tiny(num_layers=1)).new_cache(1)
        ),
        VALUE,
        ["'cache'", "2 layers"],
    ),
    ("lm-step-batch-mismatch", lambda: _batch_mismatch(), VALUE, ["'cache'", "batch size 2"]),
    (
        "arch-position-offset",
        lambda: Architecture(position_offset=-1),
        VALUE,
        ["'arch.position_offset'", "-1"],
    ),
    (
        "encoder-window",
        lambda: VariantEncoder(TransformerConfig.tiny(arch=Architecture(sliding_window=2))),
        VALUE,
        ["'config.arch.sliding_window'", "2"],
    ),
    (
        "encoder-alibi",
        lambda: VariantEncoder(TransformerConfig.tiny(arch=Architecture(positions="alibi"))),
        VALUE,
        ["'config.arch.positions'", "alibi"],
    ),
    (
        "decoder-parallel-block",
        lambda: VariantEncoderDecoder(
            TransformerConfig.tiny(norm_placement="pre", arch=Architecture(block="parallel"))
        ),
        VALUE,
        ["'config.arch.block'", "parallel"],
    ),
    ("encdec-step-foreign-cache", lambda: _foreign_cache_step(), EITHER, ["'cache'", "VariantEncDecCache"]),
    ("encdec-step-other-memory", lambda: _other_memory_step(), VALUE, ["'memory'"]),
]


def _encdec() -> VariantEncoderDecoder:
    return VariantEncoderDecoder(TransformerConfig.tiny(arch=Architecture(shared_embeddings=True))).eval()


def _foreign_cache_step() -> None:
    model = _encdec()
    memory = model.encode(torch.ones(1, 3, dtype=torch.long))
    model.step(torch.ones(1, 1, dtype=torch.long), memory, [])  # type: ignore[arg-type]


def _other_memory_step() -> None:
    model = _encdec()
    cache = model.new_cache(1)
    memory = model.encode(torch.ones(1, 3, dtype=torch.long))
    model.step(torch.ones(1, 1, dtype=torch.long), memory, cache)
    model.step(torch.ones(1, 1, dtype=torch.long), memory + 1, cache)


def _batch_mismatch() -> None:
    model = lm()
    cache = model.new_cache(1)
    model.step(torch.ones(1, 2, dtype=torch.long), cache)
    model.step(torch.ones(2, 1, dtype=torch.long), cache)


@pytest.mark.parametrize(("call", "errors", "needles"), case_params(CASES))
def test_bad_input_raises_clear_error(
    call: Callable[[], Any], errors: tuple[type[BaseException], ...], needles: list[str]
) -> None:
    assert_clear_error(call, errors, needles)
