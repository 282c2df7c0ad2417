"""The architecture variants a ``TransformerConfig`` can declare, as one small frozen dataclass.

``TransformerConfig.arch`` holds an ``Architecture``; its defaults are the notes' architecture
(absolute positions, LayerNorm, full multi-head attention, an ungated FFN with biases, sequential
sublayers), so a config that never mentions ``arch`` means what it always meant. The sizes, the
norm placement (``post``/``pre``), ``eps``, embedding scaling and tying stay on ``TransformerConfig``.
``reference.variant_lm.VariantLM`` is the decoder-only model built from any such config;
``reference.presets`` has Llama, Mistral and GPT-NeoX shaped examples. Conventions
(docs/ARCHITECTURE.md, "Architecture variants"):

- ``positions``: ``absolute`` (the config's sinusoidal or learned table, added to the embedding),
  ``rotary`` (``rope_theta``, ``rope_fraction`` of the head width, ``rope_layout`` ``half`` or
  ``interleaved``), ``alibi``, ``relative`` (T5 buckets: ``relative_buckets``, ``relative_max_distance``,
  causal in a decoder) or ``none``. Declared for an attention function (``Capability.ATTENTION``),
  ``alibi`` and ``relative`` add their bias inside it, ``relative_bidirectional`` choosing the buckets
  (the reference models pick them per component: causal in a decoder, bidirectional in an encoder).
- ``position_ids``: ``slots`` (the token in column ``j`` has position ``j``, padding or not) or
  ``from_first_token`` (positions count real tokens only, so a left-padded row starts at 0: Hugging
  Face ``generate``, OPT). Masks, windows and relative biases always use slots; for real tokens a slot
  difference equals the difference of position ids.
- ``norm``: ``layernorm`` or ``rmsnorm`` (``norm_offset``: gain ``1 + w``, Gemma).
- ``activation`` (``None``: the config's ``activation``), ``gated`` (GLU: SwiGLU with ``silu``,
  GeGLU with ``gelu``/``gelu_tanh``), ``ffn_bias``.
- ``num_kv_heads`` (``None``: as many as query heads), ``kv_mapping`` (``contiguous``/``tiled``),
  ``sliding_window`` (``i - w < j <= i``), ``attn_scale`` (``None``: ``1/sqrt(d_head)``),
  ``attn_softcap``, ``qkv_bias``, ``out_bias``.
- ``block``: ``sequential`` or ``parallel`` (``x + attn(n1(x)) + ffn(n2(x))``; ``shared_norm`` uses one
  norm for both, GPT-J); ``final_norm``: the extra norm after the last layer of a ``pre`` stack.
- Embedding and head (``reference.variant_encdec``, BERT/BART/T5): ``embed_norm`` (a norm on
  embedding + positions before the first layer: BERT, BART's ``layernorm_embedding``),
  ``position_offset`` (a learned table of ``max_len + offset`` rows where position ``p`` reads row
  ``p + offset``: BART's 2), ``shared_embeddings`` (one token table for source and target in an
  encoder-decoder), ``head_rescale`` (the last hidden state times ``d_model ** -0.5`` before the output
  projection: T5 with its tied head).
"""

import math
from dataclasses import dataclass
from typing import Literal

from transformer_conformance.reference.checking import require
from transformer_conformance.reference.gated_ffn import ACTIVATION_NAMES, ActivationName
from transformer_conformance.reference.grouped import KV_MAPPINGS, KVMapping
from transformer_conformance.reference.rotary import ROPE_LAYOUTS, RopeLayout

PositionKind = Literal["absolute", "rotary", "alibi", "relative", "none"]
POSITION_KINDS: tuple[str, ...] = ("absolute", "rotary", "alibi", "relative", "none")
POSITION_IDS: tuple[str, ...] = ("slots", "from_first_token")
NORMS: tuple[str, ...] = ("layernorm", "rmsnorm")
BLOCKS: tuple[str, ...] = ("sequential", "parallel")


@dataclass(frozen=True)
class Architecture:
    """Which variant of each part a model uses; the defaults are the notes' architecture.

    Claims: arch.notes-default.
    """

    positions: PositionKind = "absolute"
    rope_theta: float = 10000.0
    rope_fraction: float = 1.0
    rope_layout: RopeLayout = "half"
    relative_buckets: int = 32
    relative_max_distance: int = 128
    relative_bidirectional: bool = True
    position_ids: Literal["slots", "from_first_token"] = "slots"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_offset: bool = False
    activation: ActivationName | None = None
    gated: bool = False
    ffn_bias: bool = True
    num_kv_heads: int | None = None
    kv_mapping: KVMapping = "contiguous"
    sliding_window: int | None = None
    attn_scale: float | None = None
    attn_softcap: float | None = None
    qkv_bias: bool = True
    out_bias: bool = True
    block: Literal["sequential", "parallel"] = "sequential"
    shared_norm: bool = False
    final_norm: bool = True
    embed_norm: bool = False
    position_offset: int = 0
    shared_embeddings: bool = False
    head_rescale: bool = False

    def __post_init__(self) -> None:
        for name, allowed in (
            ("positions", POSITION_KINDS),
            ("rope_layout", ROPE_LAYOUTS),
            ("position_ids", POSITION_IDS),
            ("norm", NORMS),
            ("kv_mapping", KV_MAPPINGS),
            ("block", BLOCKS),
        ):
            value = getattr(self, name)
            require(value in allowed, f"arch.{name}", f"one of {allowed}", repr(value))
        require(
            self.activation is None or self.activation in ACTIVATION_NAMES,
            "arch.activation",
            f"None or one of {ACTIVATION_NAMES}",
            repr(self.activation),
        )
        require(
            0.0 < self.rope_fraction <= 1.0, "arch.rope_fraction", "a fraction in (0, 1]", self.rope_fraction
        )
        require(self.rope_theta > 1.0, "arch.rope_theta", "a base > 1", self.rope_theta)
        for name in ("num_kv_heads", "sliding_window"):
            value = getattr(self, name)
            require(
                value is None or (isinstance(value, int) and value > 0), f"arch.{name}", "None or > 0", value
            )
        for name in ("attn_scale", "attn_softcap"):
            value = getattr(self, name)
            ok = value is None or (math.isfinite(value) and value > 0)
            require(ok, f"arch.{name}", "None or a finite positive number", value)
        require(
            self.relative_buckets >= 4, "arch.relative_buckets", "at least 4 buckets", self.relative_buckets
        )
        require(
            self.relative_max_distance > self.relative_buckets // 2,
            "arch.relative_max_distance",
            f"a distance > relative_buckets // 2 = {self.relative_buckets // 2}",
            self.relative_max_distance,
        )
        require(
            isinstance(self.position_offset, int) and self.position_offset >= 0,
            "arch.position_offset",
            "an integer >= 0",
            self.position_offset,
        )
        require(
            not self.shared_norm or self.block == "parallel",
            "arch.shared_norm",
            "block='parallel'",
            self.block,
        )

    def check_sizes(self, num_heads: int, d_head: int) -> None:
        """Cross-field checks against the config's sizes (KV heads divide heads, even rotary width).

        Claims: gqa.repeat-equivalence, rotary.frequencies.
        """
        kv = self.kv_heads(num_heads)
        require(num_heads % kv == 0, "arch.num_kv_heads", f"a divisor of num_heads = {num_heads}", kv)
        if self.positions == "rotary":
            d_rot = int(d_head * self.rope_fraction)
            require(
                d_rot > 0 and d_rot % 2 == 0,
                "arch.rope_fraction",
                f"an even rotated width of d_head={d_head}",
                d_rot,
            )

    def kv_heads(self, num_heads: int) -> int:
        """The number of key/value heads (``num_heads`` unless declared). Claims: gqa.repeat-equivalence."""
        return num_heads if self.num_kv_heads is None else self.num_kv_heads
