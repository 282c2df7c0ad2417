"""Targets for ``torch.nn.TransformerEncoderLayer``, ``TransformerDecoderLayer`` and ``nn.Transformer``.

Each layer runs on one of torch's two code paths, exposed as separate targets:

- slow path (``torch-encoder-layer``, ``torch-decoder-layer``, ``torch-transformer``): the Python
  composition of ``nn.MultiheadAttention``, ``nn.Linear`` and ``nn.LayerNorm``. Called with autograd
  enabled and parameters that require grad, which is one of the conditions that turn the fast path off.
- fast path (``torch-encoder-layer-fastpath``, ``torch-transformer-fastpath``): called under
  ``torch.no_grad()`` in eval mode, so ``TransformerEncoderLayer`` dispatches to the fused
  ``torch._transformer_encoder_layer_fwd`` and ``TransformerEncoder`` packs padded batches into nested
  tensors (right padding only; it returns zeros at pad positions). The decoder has no fast path.

Conventions: torch's key padding masks are True = padding, so these targets declare
``mask_polarity="true_masks"`` and receive pad masks already inverted. Residual placement follows the
declared convention (``norm_first`` = pre); activation ReLU; dropout from the config (0 in the checks,
inactive in eval anyway).

Canonical weights: a reference state_dict maps onto torch's names with ``in_proj_weight =
cat(w_q, w_k, w_v)`` (biases alike), ``out_proj = w_o``, ``linear1/2 = ffn.w_1/2``, ``norm1..3 =
norm_1..3``, ``multihead_attn = cross_attn``; ``encoder.final_norm`` / ``decoder.final_norm`` (pre only)
map to ``encoder.norm`` / ``decoder.norm``.

``nn.Transformer`` has no embeddings or output projection: the encoder-decoder handle takes the
reference's token embeddings, positional encodings and ``lm_head`` around ``nn.Transformer``'s
encoder and decoder. ``nn.Transformer`` always appends a final LayerNorm to both stacks; the post-LN
paper model has none, so for ``post`` these norms are removed (``encoder.norm = decoder.norm = None``).
Incremental decoding is "recompute the prefix": the cache keeps the tokens seen so far and each step
reruns the decoder on all of them (declared; cached == recompute must still hold).
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.targets.reference import _build

#: reference name -> torch name for the parts that are renamed one to one.
_RENAMES: tuple[tuple[str, str], ...] = (
    ("self_attn.w_o.", "self_attn.out_proj."),
    ("cross_attn.w_o.", "multihead_attn.out_proj."),
    ("ffn.w_1.", "linear1."),
    ("ffn.w_2.", "linear2."),
    ("norm_1.", "norm1."),
    ("norm_2.", "norm2."),
    ("norm_3.", "norm3."),
)


def layer_state(state: dict[str, Tensor], prefix: str = "", cross: bool = False) -> dict[str, Tensor]:
    """torch layer state (``prefix`` kept) from a reference layer state: fuse Q/K/V, rename the rest.

    Claims: mha.fused-equals-per-head (torch's fused in_proj is the three projections stacked).
    """
    out: dict[str, Tensor] = {}
    attns = [("self_attn", "self_attn")] + ([("cross_attn", "multihead_attn")] if cross else [])
    for ref, tor in attns:
        for kind in ("weight", "bias"):
            parts = [state[f"{prefix}{ref}.w_{x}.{kind}"] for x in ("q", "k", "v")]
            out[f"{prefix}{tor}.in_proj_{kind}"] = torch.cat(parts, dim=0)
    for name, value in state.items():
        rest = name[len(prefix) :]
        if not name.startswith(prefix) or any(
            rest.startswith(f"{a}.w_{x}.") for a, _ in attns for x in "qkv"
        ):
            continue
        for ref, tor in _RENAMES:
            if rest.startswith(ref):
                out[prefix + tor + rest[len(ref) :]] = value
                break
    return out


def transformer_state(state: dict[str, Tensor], num_layers: int) -> dict[str, Tensor]:
    """``nn.Transformer`` state from a reference ``EncoderDecoder`` state (encoder/decoder parts only)."""
    out: dict[str, Tensor] = {}
    for i in range(num_layers):
        out.update(layer_state(state, f"encoder.layers.{i}."))
        out.update(layer_state(state, f"decoder.layers.{i}.", cross=True))
    for stack in ("encoder", "decoder"):
        for kind in ("weight", "bias"):
            key = f"{stack}.final_norm.{kind}"
            if key in state:
                out[f"{stack}.norm.{kind}"] = state[key]
    return out


def _causal_hide(t: int, device: torch.device) -> Tensor:
    """torch's boolean causal mask: True above the diagonal (= may not attend)."""
    return torch.ones(t, t, dtype=torch.bool, device=device).triu(1)


@dataclass
class RecomputeCache:
    """The "cache" of the recompute-the-prefix strategy: the target tokens seen so far and their padding
    (torch's polarity, True = pad; all False for a chunk given without one)."""

    chunks: list[Tensor] = field(default_factory=list)
    pads: list[Tensor] = field(default_factory=list)


class TorchTransformerHandle:
    """encode / decode / new_cache / step over ``nn.Transformer`` with the reference's embeddings and head."""

    def __init__(self, adapter: "TorchLayersAdapter", transformer: nn.Transformer, around: Any) -> None:
        self.adapter, self.transformer, self.around = adapter, transformer, around

    def encode(self, src: Tensor, src_pad: Tensor | None = None) -> Tensor:
        """Memory = nn.TransformerEncoder(embedding + positions)."""
        x = self.adapter.run(self.around.embed_source, src)
        return self.adapter.run(self.transformer.encoder, x, src_key_padding_mask=src_pad)

    def decode(
        self, tgt: Tensor, memory: Tensor, src_pad: Tensor | None = None, tgt_pad: Tensor | None = None
    ) -> Tensor:
        """Teacher-forced logits: nn.TransformerDecoder with a causal mask, then the reference lm_head."""
        x = self.adapter.run(self.around.embed_target, tgt)
        h = self.adapter.run(
            self.transformer.decoder,
            x,
            memory,
            tgt_mask=_causal_hide(tgt.shape[1], tgt.device),
            tgt_key_padding_mask=tgt_pad,
            memory_key_padding_mask=src_pad,
            tgt_is_causal=True,
        )
        return self.adapter.run(self.around.lm_head, h)

    def new_cache(self, batch: int) -> RecomputeCache:
        """An empty token history."""
        return RecomputeCache()

    def step(
        self,
        tgt_chunk: Tensor,
        memory: Tensor,
        cache: RecomputeCache,
        src_pad: Tensor | None = None,
        tgt_pad_chunk: Tensor | None = None,
    ) -> Tensor:
        """Logits of the new tokens, by rerunning the decoder on the whole history (declared strategy);
        ``tgt_pad_chunk`` (torch's polarity, True = pad) marks padding among the new tokens, kept with the
        history so later steps hide those slots too.

        Claims: encdec.cache-padded-prompts, kvcache.equals-recompute.
        """
        cache.chunks.append(tgt_chunk)
        pad = torch.zeros_like(tgt_chunk, dtype=torch.bool) if tgt_pad_chunk is None else tgt_pad_chunk
        cache.pads.append(pad.to(torch.bool))
        history_pad = torch.cat(cache.pads, dim=1)
        tgt_pad = history_pad if bool(history_pad.any()) else None
        logits = self.decode(torch.cat(cache.chunks, dim=1), memory, src_pad, tgt_pad)
        return logits[:, -tgt_chunk.shape[1] :]


class TorchLayersAdapter(Adapter):
    """torch's Transformer modules; ``fastpath`` selects the fused inference path."""

    name = "torch-layers"
    capabilities: frozenset[Capability] = frozenset()
    conventions = Conventions(mask_polarity="true_masks", returns_weights=False)
    fastpath = False

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Tensor:
        """Call ``fn`` on the chosen path: no_grad (fast path allowed) or grad enabled (slow path)."""
        if self.fastpath:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's "nested tensors are a prototype" notice
                out: Tensor = fn(*args, **kwargs)
            return out
        with torch.enable_grad():
            out = fn(*args, **kwargs)
        return out.detach()

    def _transformer(
        self, config: Any, num_layers: int, device: torch.device, dtype: torch.dtype
    ) -> nn.Transformer:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "enable_nested_tensor is True, but ... norm_first" notices
            model = nn.Transformer(
                config.d_model,
                config.num_heads,
                num_layers,
                num_layers,
                config.d_ff,
                config.dropout,
                activation=config.activation,
                layer_norm_eps=config.eps,
                batch_first=True,
                norm_first=config.norm_placement == "pre",
                device=device,
                dtype=dtype,
            )
        if config.norm_placement == "post":
            model.encoder.norm = None
            model.decoder.norm = None
        return model

    @staticmethod
    def _layer_args(config: Any, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        """The keyword arguments shared by nn.TransformerEncoderLayer and nn.TransformerDecoderLayer."""
        return {
            "d_model": config.d_model,
            "nhead": config.num_heads,
            "dim_feedforward": config.d_ff,
            "dropout": config.dropout,
            "activation": config.activation,
            "layer_norm_eps": config.eps,
            "batch_first": True,
            "norm_first": config.norm_placement == "pre",
            "device": device,
            "dtype": dtype,
        }

    def _encoder_layer(
        self, config: Any, device: torch.device, dtype: torch.dtype
    ) -> nn.TransformerEncoderLayer:
        return nn.TransformerEncoderLayer(**self._layer_args(config, device, dtype))

    def _decoder_layer(
        self, config: Any, device: torch.device, dtype: torch.dtype
    ) -> nn.TransformerDecoderLayer:
        return nn.TransformerDecoderLayer(**self._layer_args(config, device, dtype))

    def build_encoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """nn.TransformerEncoderLayer: (x, key_padding (True = pad) | None) -> y."""
        layer = self._encoder_layer(config, device, dtype)
        if state is not None:
            layer.load_state_dict(layer_state(state))
        layer.eval()

        def run(x: Tensor, pad: Tensor | None = None) -> Tensor:
            return self.run(layer, x, src_key_padding_mask=pad)

        return run

    def build_decoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """nn.TransformerDecoderLayer with torch's boolean causal mask: (x, memory, tgt_pad, mem_pad) -> y."""
        layer = self._decoder_layer(config, device, dtype)
        if state is not None:
            layer.load_state_dict(layer_state(state, cross=True))
        layer.eval()

        def run(
            x: Tensor, memory: Tensor, tgt_pad: Tensor | None = None, mem_pad: Tensor | None = None
        ) -> Tensor:
            return self.run(
                layer,
                x,
                memory,
                tgt_mask=_causal_hide(x.shape[1], x.device),
                tgt_key_padding_mask=tgt_pad,
                memory_key_padding_mask=mem_pad,
                tgt_is_causal=True,
            )

        return run

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """nn.Transformer between the reference's embeddings/positions and lm_head (see the module doc)."""
        from transformer_conformance.reference.model import EncoderDecoder

        around = _build(lambda: EncoderDecoder(config), state, device, dtype)
        model = self._transformer(config, config.num_layers, device, dtype)
        model.load_state_dict(transformer_state(around.state_dict(), config.num_layers))
        return TorchTransformerHandle(self, model.eval(), around)


class TorchTransformerLayersAdapter(TorchLayersAdapter):
    """Layers taken from an ``nn.Transformer`` instance (``encoder.layers[0]``, ``decoder.layers[0]``)."""

    def _encoder_layer(
        self, config: Any, device: torch.device, dtype: torch.dtype
    ) -> nn.TransformerEncoderLayer:
        layer = self._transformer(config, 1, device, dtype).encoder.layers[0]
        assert isinstance(layer, nn.TransformerEncoderLayer)
        return layer

    def _decoder_layer(
        self, config: Any, device: torch.device, dtype: torch.dtype
    ) -> nn.TransformerDecoderLayer:
        layer = self._transformer(config, 1, device, dtype).decoder.layers[0]
        assert isinstance(layer, nn.TransformerDecoderLayer)
        return layer


def _make(
    cls: type[TorchLayersAdapter], name: str, caps: set[Capability], fastpath: bool
) -> TorchLayersAdapter:
    adapter = cls()
    adapter.name = name
    adapter.capabilities = frozenset(caps)
    adapter.fastpath = fastpath
    return adapter


def make_encoder_layer() -> TorchLayersAdapter:
    """``torch-encoder-layer``: nn.TransformerEncoderLayer on the slow (composed) path."""
    return _make(TorchLayersAdapter, "torch-encoder-layer", {Capability.ENCODER_LAYER}, False)


def make_encoder_layer_fastpath() -> TorchLayersAdapter:
    """``torch-encoder-layer-fastpath``: nn.TransformerEncoderLayer on the fused inference path."""
    return _make(TorchLayersAdapter, "torch-encoder-layer-fastpath", {Capability.ENCODER_LAYER}, True)


def make_decoder_layer() -> TorchLayersAdapter:
    """``torch-decoder-layer``: nn.TransformerDecoderLayer (it has a single code path)."""
    return _make(TorchLayersAdapter, "torch-decoder-layer", {Capability.DECODER_LAYER}, False)


def make_transformer() -> TorchLayersAdapter:
    """``torch-transformer``: nn.Transformer's layers and an encoder-decoder handle, slow path."""
    caps = {Capability.ENCODER_LAYER, Capability.DECODER_LAYER, Capability.ENCODER_DECODER}
    return _make(TorchTransformerLayersAdapter, "torch-transformer", caps, False)


def make_transformer_fastpath() -> TorchLayersAdapter:
    """``torch-transformer-fastpath``: the encoder-decoder handle on the no-grad (fast) paths."""
    return _make(
        TorchTransformerLayersAdapter, "torch-transformer-fastpath", {Capability.ENCODER_DECODER}, True
    )
