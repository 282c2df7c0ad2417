"""Encoder: a stack of identical layers, each self-attention then a position-wise FFN.

Each sublayer sits in a residual connection with LayerNorm, ``post`` (LayerNorm(x + Sublayer(x)),
the default) or ``pre`` (x + Sublayer(LayerNorm(x))); the pre-LN stack ends with ``final_norm``.
Parameter names (the canonical weight layout): ``layers.{i}.self_attn``, ``layers.{i}.norm_1``,
``layers.{i}.ffn``, ``layers.{i}.norm_2``, and ``final_norm`` for ``pre`` only.
"""

from jaxtyping import Bool, Float
from torch import Tensor, nn

from transformer_conformance.reference.checking import checked
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.ffn import PositionWiseFFN
from transformer_conformance.reference.layernorm import LayerNorm
from transformer_conformance.reference.masks import key_padding_to_attention_mask
from transformer_conformance.reference.multihead import MultiHeadAttention
from transformer_conformance.reference.sublayer import residual_sublayer


class EncoderLayer(nn.Module):
    """One encoder layer: self-attention (padding keys hidden) and FFN, each in a residual sublayer.

    Claims: attention.self.same-input, residual.post-ln, residual.adds-update, encoder.output-per-position,
    encoder.mixing-only-in-attention, attention.permutation-equivariance.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.self_attn = MultiHeadAttention(config.d_model, config.num_heads)
        self.norm_1 = LayerNorm(config.d_model, eps=config.eps)
        self.ffn = PositionWiseFFN(config.d_model, config.d_ff, activation=config.activation)
        self.norm_2 = LayerNorm(config.d_model, eps=config.eps)
        self.dropout = nn.Dropout(config.dropout)

    @checked
    def forward(
        self,
        x: Float[Tensor, "batch length d_model"],
        pad_mask: Bool[Tensor, "batch length"] | None = None,
    ) -> Float[Tensor, "batch length d_model"]:
        """Map n input vectors to n output vectors; ``pad_mask`` (True = real token) hides padding keys.

        Claims: attention.self.same-input, residual.post-ln, encoder.output-per-position,
        mask.padding.invariance.
        """
        mask = None if pad_mask is None else key_padding_to_attention_mask(pad_mask)

        def attend(h: Tensor) -> Tensor:
            out: Tensor = self.self_attn(h, h, mask)[0]
            return out

        placement = self.config.norm_placement
        x = residual_sublayer(x, attend, self.norm_1, placement=placement, dropout=self.dropout)
        x = residual_sublayer(x, self.ffn, self.norm_2, placement=placement, dropout=self.dropout)
        return x


class Encoder(nn.Module):
    """``num_layers`` identical encoder layers; each layer's output is the next one's input.

    Claims: encoder.stack, encoder.output-per-position.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))
        self.final_norm: LayerNorm | None = (
            LayerNorm(config.d_model, eps=config.eps) if config.norm_placement == "pre" else None
        )

    @checked
    def forward(
        self,
        x: Float[Tensor, "batch length d_model"],
        pad_mask: Bool[Tensor, "batch length"] | None = None,
    ) -> Float[Tensor, "batch length d_model"]:
        """Run the stack; the result (the last layer's output) is the memory every decoder layer reads.

        Claims: encoder.stack, encoder.output-per-position, encdec.memory-from-last-layer.
        """
        for layer in self.layers:
            x = layer(x, pad_mask)
        if self.final_norm is not None:
            normed: Tensor = self.final_norm(x)
            x = normed
        return x


def encoder_layer_outputs(encoder: Encoder, x: Tensor, pad_mask: Tensor | None = None) -> list[Tensor]:
    """Every layer's output in order (the last one, before ``final_norm``, feeds the memory).

    A helper for tests and checks. Claims: encoder.stack.
    """
    outputs: list[Tensor] = []
    h = x
    for layer in encoder.layers:
        h = layer(h, pad_mask)
        outputs.append(h)
    return outputs


__all__ = ["Encoder", "EncoderLayer", "encoder_layer_outputs"]
