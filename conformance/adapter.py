"""What a target exposes to the conformance suite: capabilities, conventions and the ``Adapter`` base.

A target is any implementation under audit. Its adapter subclasses ``Adapter``, overrides the
methods it supports and lists exactly those in ``capabilities``; checks needing anything else are
reported "not-applicable" (naming the missing capability) instead of failing.

Conventions are declared, never guessed: a check converts its canonical inputs (e.g. a boolean
mask where True = may attend) into the target's declared convention before calling it. ``conventions``
is the adapter-wide default; ``capability_conventions`` overrides it per capability (a torch SDPA
function with True = attend beside an ``nn.MultiheadAttention`` with True = masked), read through
``conventions_for``.

The architecture is declared too: ``architecture`` is the reference ``Architecture`` the target's
models and attention follow (``None``: the notes' architecture), overridable per capability with
``capability_architectures``. Checks build their oracle from it (a ``VariantLM`` for a Llama-like LM,
grouped-query attention for GQA) and report "not-applicable", with the reason, what the declaration
rules out. ``config_fields`` fixes other ``TransformerConfig`` fields the target's models always have
(BERT: ``{"positional": "learned"}``, T5: ``{"tie_embeddings": True}``); the checks' configs carry them.
``built_from`` names the capabilities a composite capability is made of (default: all the
target declares), so that a broken component blocks only what is really built on it.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from transformer_conformance.reference.architecture import Architecture


class Capability(StrEnum):
    """One piece of functionality a target may expose; each maps to one adapter method."""

    ATTENTION = "attention"
    MHA = "mha"
    LAYER_NORM = "layer_norm"
    FFN = "ffn"
    POSITIONAL = "positional"
    ENCODER_LAYER = "encoder_layer"
    DECODER_LAYER = "decoder_layer"
    ENCODER_DECODER = "encoder_decoder"
    ENCODER = "encoder"
    DECODER_LM = "decoder_lm"
    SAMPLER = "sampler"
    LOSS = "loss"


#: The adapter method that provides each capability (used to spot undeclared/unimplemented ones).
CAPABILITY_METHODS: dict[Capability, str] = {
    Capability.ATTENTION: "attention",
    Capability.MHA: "build_mha",
    Capability.LAYER_NORM: "build_layer_norm",
    Capability.FFN: "build_ffn",
    Capability.POSITIONAL: "positional_table",
    Capability.ENCODER_LAYER: "build_encoder_layer",
    Capability.DECODER_LAYER: "build_decoder_layer",
    Capability.ENCODER_DECODER: "build_encoder_decoder",
    Capability.ENCODER: "build_encoder",
    Capability.DECODER_LM: "build_lm",
    Capability.SAMPLER: "sample",
    Capability.LOSS: "next_token_loss",
}


def _default_dtypes() -> tuple[torch.dtype, ...]:
    return (torch.float32, torch.float64)


@dataclass(frozen=True)
class Conventions:
    """The conventions a target declares; checks adapt their canonical inputs to these.

    Claims: attention.fully-masked-row, mask.causal.alignment, positional.sinusoidal.formula,
    residual.post-ln, layernorm.formula, sampling.invalid-temperature.
    """

    mask_polarity: Literal["true_attends", "true_masks"] = "true_attends"
    causal_alignment: Literal["top-left", "bottom-right"] = "bottom-right"
    fully_masked_row: Literal["zero", "nan", "uniform", "zero_output_uniform_weights"] = "zero"
    sinusoidal_layout: Literal["interleaved", "concatenated"] = "interleaved"
    norm_placement: Literal["post", "pre"] = "post"
    layer_norm_eps: float = 1e-5
    temperature_zero: Literal["greedy", "error"] = "greedy"
    returns_weights: bool = True
    loads_weights: bool = True
    nonfinite_pads: Literal["isolated", "leak"] = "isolated"
    supported_d_heads: tuple[int, ...] = ()
    dtypes: tuple[torch.dtype, ...] = field(default_factory=_default_dtypes)


class Adapter:
    """Base class of every target adapter: override what you support and declare it.

    Shapes follow docs/ARCHITECTURE.md ("Conformance API"). ``state`` arguments are a reference
    module's ``state_dict()`` (canonical parameter names) or ``None`` for fresh random weights.
    Masks reach the adapter already in the declared polarity; ``None`` means no mask.
    """

    name: str = "unnamed"
    capabilities: frozenset[Capability] = frozenset()
    conventions: Conventions = Conventions()
    #: Per-capability overrides of ``conventions`` (a capability missing here uses the default).
    capability_conventions: ClassVar[Mapping[Capability, Conventions]] = {}
    #: The architecture the target's models and attention follow (None: the notes' architecture).
    architecture: Architecture | None = None
    #: Per-capability overrides of ``architecture``.
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {}
    #: ``TransformerConfig`` fields the target's models fix (e.g. learned positions, a tied head).
    config_fields: ClassVar[Mapping[str, Any]] = {}
    #: For a composite capability, the capabilities it is built from (missing: every declared one).
    components: ClassVar[Mapping[Capability, frozenset[Capability]]] = {}

    def conventions_for(self, capabilities: Capability | Iterable[Capability] | None = None) -> Conventions:
        """The conventions of ``capabilities``: the first override among them (in ``Capability``
        order), else the adapter-wide ``conventions``.

        Claims: attention.fully-masked-row, mask.causal.alignment.
        """
        wanted = {capabilities} if isinstance(capabilities, Capability) else set(capabilities or ())
        for cap in Capability:
            if cap in wanted and cap in self.capability_conventions:
                return self.capability_conventions[cap]
        return self.conventions

    def architecture_for(self, capabilities: Capability | Iterable[Capability] | None = None) -> Architecture:
        """The declared ``Architecture`` of ``capabilities`` (the notes' default when none is declared).

        Claims: arch.notes-default.
        """
        wanted = {capabilities} if isinstance(capabilities, Capability) else set(capabilities or ())
        for cap in Capability:
            if cap in wanted and cap in self.capability_architectures:
                return self.capability_architectures[cap]
        return self.architecture if self.architecture is not None else Architecture()

    def built_from(self, capability: Capability) -> frozenset[Capability]:
        """The capabilities ``capability`` is built from (default: every capability the target declares)."""
        return self.components.get(capability, self.capabilities)

    def _unsupported(self, capability: Capability) -> NotImplementedError:
        return NotImplementedError(
            f"target {self.name!r} does not implement capability {capability.value!r} "
            f"(method {CAPABILITY_METHODS[capability]})"
        )

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Scaled dot-product attention on [b, h, n, d] tensors -> (out, weights or None)."""
        raise self._unsupported(Capability.ATTENTION)

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """A callable (x_q, x_kv, key_padding | None, attn_mask | None) -> (out, weights | None)."""
        raise self._unsupported(Capability.MHA)

    def build_layer_norm(
        self, d: int, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[[Tensor], Tensor]:
        """A callable x -> LayerNorm(x) over the last axis."""
        raise self._unsupported(Capability.LAYER_NORM)

    def build_ffn(
        self,
        d_model: int,
        d_ff: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[[Tensor], Tensor]:
        """A callable x [b, l, d_model] -> [b, l, d_model]."""
        raise self._unsupported(Capability.FFN)

    def positional_table(
        self, num_positions: int, d_model: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """The positional encoding table [num_positions, d_model]."""
        raise self._unsupported(Capability.POSITIONAL)

    def build_encoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """A callable (x, pad_mask | None) -> y for one encoder layer."""
        raise self._unsupported(Capability.ENCODER_LAYER)

    def build_decoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """A callable (x, memory, tgt_pad | None, mem_pad | None) -> y for one decoder layer."""
        raise self._unsupported(Capability.DECODER_LAYER)

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """A handle with encode / decode / new_cache / step, as ``reference.model.EncoderDecoder``:
        ``step(tgt_chunk, memory, cache, src_pad | None, tgt_pad_chunk | None)``, where the optional
        ``tgt_pad_chunk`` marks padding among the new target tokens (as the LM's ``pad_mask_chunk``)."""
        raise self._unsupported(Capability.ENCODER_DECODER)

    def build_encoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """A handle with ``hidden(ids [b, l], pad_mask [b, l] | None) -> [b, l, d_model]``: an encoder-only
        model (BERT-like), as ``reference.variant_encdec.VariantEncoder``; ``pad_mask`` in the declared
        polarity (canonical: True = real token)."""
        raise self._unsupported(Capability.ENCODER)

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """A handle with logits(ids, pad_mask) / new_cache(batch) / step(ids_chunk, cache)."""
        raise self._unsupported(Capability.DECODER_LM)

    def sample(self, logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
        """Sample one id per row of logits [b, vocab] at ``temperature`` -> ids [b]."""
        raise self._unsupported(Capability.SAMPLER)

    def next_token_loss(self, logits: Tensor, ids: Tensor, pad_id: int | None) -> Tensor:
        """Shifted cross-entropy (scalar) of logits [b, l, vocab] against ids [b, l]."""
        raise self._unsupported(Capability.LOSS)

    def declaration_problems(self) -> list[str]:
        """Capabilities declared but whose method is not overridden (a broken adapter)."""
        problems = []
        for cap in self.capabilities:
            method = CAPABILITY_METHODS[cap]
            if getattr(type(self), method) is getattr(Adapter, method):
                problems.append(f"declares {cap.value!r} but does not override {method}()")
        return problems
