"""Planted-bug layers, stacks and encodings for the structural claims (``test_structure_claims``).

Each mutant keeps the reference's signature and breaks one structural rule: the sublayer output
replaces its input, positions collapse onto a short period, heads keep the full width, the encoder
turns causal, a stack stops chaining its layers, a layer runs its sublayers in the wrong order.
"""

import dataclasses

import torch
from torch import Tensor, nn

from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.decoder import Decoder, DecoderLayer, DecoderOnlyStack
from transformer_conformance.reference.encoder import EncoderLayer
from transformer_conformance.reference.masks import causal_mask, combine_masks, key_padding_to_attention_mask
from transformer_conformance.reference.multihead import MultiHeadAttention
from transformer_conformance.reference.positional import Layout, sinusoidal_encoding
from transformer_conformance.reference.sublayer import residual_sublayer

# --------------------------------------------------------------------------- attention output


class ReplacingEncoderLayer(EncoderLayer):
    """Bug: the attention output replaces the token's vector (no residual around self-attention).

    post: ``h = norm_1(attn(x))``; pre: ``h = attn(norm_1(x))``; the FFN sublayer is left intact.
    """

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        mask = None if pad_mask is None else key_padding_to_attention_mask(pad_mask)
        if self.config.norm_placement == "post":
            h = self.norm_1(self.self_attn(x, x, mask)[0])
        else:
            n = self.norm_1(x)
            h = self.self_attn(n, n, mask)[0]
        return residual_sublayer(h, self.ffn, self.norm_2, placement=self.config.norm_placement)


# --------------------------------------------------------------------------- positions


def sinusoidal_period_7(
    num_positions: int,
    d_model: int,
    *,
    layout: Layout = "interleaved",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Bug: ``PE(pos mod 7)``: the table repeats every 7 positions (period collapse)."""
    period = sinusoidal_encoding(7, d_model, layout=layout, dtype=dtype, device=device)
    index = torch.arange(num_positions, device=period.device) % 7
    return period[index]


# --------------------------------------------------------------------------- heads


class FullWidthHeadsMHA(MultiHeadAttention):
    """Bug: every head gets the whole ``d_model``-wide projection (``[b, h, l, d_model]``)."""

    def project_heads(self, layer: nn.Linear, x: Tensor) -> Tensor:
        projected: Tensor = layer(x)
        b, length, d = projected.shape
        return projected[:, None].expand(b, self.num_heads, length, d)


class FlooringMHA(MultiHeadAttention):
    """Bug: a ``d_model`` not divisible by ``num_heads`` is accepted; heads get ``d_model // num_heads``."""

    def __init__(self, d_model: int, num_heads: int, *, bias: bool = True) -> None:
        nn.Module.__init__(self)
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_head = d_model // num_heads
        width = self.d_head * num_heads
        self.w_q = nn.Linear(d_model, width, bias=bias)
        self.w_k = nn.Linear(d_model, width, bias=bias)
        self.w_v = nn.Linear(d_model, width, bias=bias)
        self.w_o = nn.Linear(width, d_model, bias=bias)


class VagueErrorMHA(MultiHeadAttention):
    """Bug: rejects an indivisible ``d_model`` with a message that names neither number."""

    def __init__(self, d_model: int, num_heads: int, *, bias: bool = True) -> None:
        from transformer_conformance.reference.checking import ReferenceInputError

        if d_model % num_heads:
            raise ReferenceInputError("argument 'num_heads': expected a valid head count")
        super().__init__(d_model, num_heads, bias=bias)


# --------------------------------------------------------------------------- encoder


class CausalEncoderLayer(EncoderLayer):
    """Bug: the encoder's self-attention is causal (position i sees only positions <= i)."""

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        padding = None if pad_mask is None else key_padding_to_attention_mask(pad_mask)
        mask = combine_masks(causal_mask(x.shape[1], x.shape[1], device=x.device), padding)

        def attend(h: Tensor) -> Tensor:
            out: Tensor = self.self_attn(h, h, mask)[0]
            return out

        placement = self.config.norm_placement
        x = residual_sublayer(x, attend, self.norm_1, placement=placement)
        return residual_sublayer(x, self.ffn, self.norm_2, placement=placement)


class PositionLeakEncoderLayer(EncoderLayer):
    """Bug: a position ramp leaks into the layer (added to its input), so token order matters inside it."""

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        ramp = torch.linspace(0.0, 1.0, x.shape[1], dtype=x.dtype, device=x.device)
        out: Tensor = super().forward(x + ramp[None, :, None], pad_mask)
        return out


# --------------------------------------------------------------------------- stacks


class UnchainedDecoder(Decoder):
    """Bug: every layer reads the original input instead of the previous layer's output."""

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_pad: Tensor | None = None,
        mem_pad: Tensor | None = None,
        cache: object = None,
    ) -> Tensor:
        out = x
        for index, layer in enumerate(self.layers):
            out = layer(x, memory, tgt_pad, mem_pad, None, index)
        return out if self.final_norm is None else self.final_norm(out)


class UnchainedDecoderOnlyStack(DecoderOnlyStack):
    """Bug: every layer reads the original input instead of the previous layer's output."""

    def forward(self, x: Tensor, pad_mask: Tensor | None = None, cache: object = None) -> Tensor:
        out = x
        for index, layer in enumerate(self.layers):
            out = layer(x, pad_mask, None, index)
        return out if self.final_norm is None else self.final_norm(out)


def heterogeneous_decoder(config: TransformerConfig) -> Decoder:
    """Bug: the last layer is built with a wider FFN than the others (layers not identical)."""
    decoder = Decoder(config)
    decoder.layers[-1] = DecoderLayer(dataclasses.replace(config, d_ff=2 * config.d_ff))
    return decoder


# --------------------------------------------------------------------------- sublayer order


class CrossFirstDecoderLayer(DecoderLayer):
    """Bug: cross-attention runs before self-attention (norms and FFN in their usual places)."""

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_pad: Tensor | None = None,
        mem_pad: Tensor | None = None,
        cache: object = None,
        layer_index: int = 0,
    ) -> Tensor:
        placement = self.config.norm_placement

        def self_part(h: Tensor) -> Tensor:
            return self.causal_self_attention(h, tgt_pad, None)

        def cross_part(h: Tensor) -> Tensor:
            return self.cross_attention(h, memory, mem_pad, None, layer_index)

        x = residual_sublayer(x, cross_part, self.norm_1, placement=placement)
        x = residual_sublayer(x, self_part, self.norm_2, placement=placement)
        return residual_sublayer(x, self.ffn, self.norm_3, placement=placement)


class ThreeSublayerEncoderLayer(EncoderLayer):
    """Bug: an encoder layer with a third residual sublayer (the FFN applied twice)."""

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        x = super().forward(x, pad_mask)
        return residual_sublayer(x, self.ffn, self.norm_2, placement=self.config.norm_placement)
