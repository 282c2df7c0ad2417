"""Model configuration: one frozen dataclass shared by the encoder-decoder and the decoder-only LM.

The defaults are the base model of the notes (d_model 512, 8 heads of 64, d_ff 2048, 6 layers,
vocabulary 37000). ``TransformerConfig.tiny()`` gives the small sizes the tests use.
Every field is validated on construction; a bad value raises ``ReferenceInputError`` naming the field.
"""

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.checking import ReferenceInputError, require

POSITIONAL_KINDS = ("sinusoidal", "learned")
LAYOUTS = ("interleaved", "concatenated")
PLACEMENTS = ("post", "pre")
ACTIVATIONS = ("relu", "gelu")


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes and conventions of a Transformer.

    Claims: sizes.base (the defaults), sizes.vocab (37000 by default, any positive size, e.g. 50257),
    mha.concat-width (``d_head * num_heads == d_model``), positional.learned.max-length (``max_len``),
    arch.notes-default (``arch``: the architecture variant, the notes' one by default; see
    reference.architecture).
    """

    vocab_size: int = 37000
    d_model: int = 512
    num_heads: int = 8
    d_ff: int = 2048
    num_layers: int = 6
    max_len: int = 1024
    positional: Literal["sinusoidal", "learned"] = "sinusoidal"
    layout: Literal["interleaved", "concatenated"] = "interleaved"
    norm_placement: Literal["post", "pre"] = "post"
    eps: float = 1e-5
    dropout: float = 0.0
    tie_embeddings: bool = False
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    scale_embedding: bool = False
    activation: Literal["relu", "gelu"] = "relu"
    arch: Architecture = field(default_factory=Architecture)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_heads", "d_ff", "num_layers", "max_len"):
            value = getattr(self, name)
            require(
                isinstance(value, int) and not isinstance(value, bool) and value > 0,
                name,
                "a positive integer",
                repr(value),
            )
        require(
            self.d_model % self.num_heads == 0,
            "d_model",
            f"a multiple of num_heads={self.num_heads}",
            self.d_model,
        )
        require(
            self.positional in POSITIONAL_KINDS,
            "positional",
            f"one of {POSITIONAL_KINDS}",
            repr(self.positional),
        )
        require(self.layout in LAYOUTS, "layout", f"one of {LAYOUTS}", repr(self.layout))
        require(
            self.norm_placement in PLACEMENTS,
            "norm_placement",
            f"one of {PLACEMENTS}",
            repr(self.norm_placement),
        )
        require(
            self.positional != "sinusoidal" or self.d_model % 2 == 0,
            "d_model",
            "an even width for sinusoidal positions",
            self.d_model,
        )
        require(
            isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps > 0,
            "eps",
            "a finite positive float",
            repr(self.eps),
        )
        require(
            isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0,
            "dropout",
            "a probability in [0, 1)",
            repr(self.dropout),
        )
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            require(
                isinstance(value, int) and 0 <= value < self.vocab_size,
                name,
                f"a token id in [0, vocab_size={self.vocab_size})",
                repr(value),
            )
        require(self.activation in ACTIVATIONS, "activation", f"one of {ACTIVATIONS}", repr(self.activation))
        require(isinstance(self.arch, Architecture), "arch", "an Architecture", type(self.arch).__name__)
        self.arch.check_sizes(self.num_heads, self.d_head)

    @property
    def d_head(self) -> int:
        """Width of one attention head, ``d_model // num_heads`` (64 in the base model).

        Claims: mha.concat-width.
        """
        return self.d_model // self.num_heads

    @classmethod
    def tiny(cls, **overrides: Any) -> "TransformerConfig":
        """Small sizes for tests (vocab 23, d_model 16, 4 heads, d_ff 32, 2 layers); keywords override fields.

        Claims: sizes.base (the same model family at test sizes).
        """
        unknown = sorted(set(overrides) - set(cls.__dataclass_fields__))
        if unknown:
            raise ReferenceInputError(
                f"argument 'overrides': expected fields of TransformerConfig, got unknown {unknown}"
            )
        base = cls(vocab_size=23, d_model=16, num_heads=4, d_ff=32, num_layers=2)
        return replace(base, **overrides)
