"""The ``reference`` target: every capability, served by the reference modules themselves.

Auditing it checks the checks (and the reference): it must pass everything. Modules are built on
the CPU with a fixed seed (when no ``state`` is given), moved to the device and dtype, loaded with
the canonical ``state_dict`` when one is given, and put in eval mode.
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from transformer_conformance.adapter import Adapter, Capability, Conventions

#: Seed for modules built without a ``state`` (fresh weights are reproducible).
BUILD_SEED = 0


def _build(
    factory: Callable[[], nn.Module],
    state: dict[str, Tensor] | None,
    device: torch.device,
    dtype: torch.dtype,
) -> nn.Module:
    """Construct (seeded, without touching the global RNG), move, load ``state``, eval."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED)
        module = factory()
    module = module.to(device=device, dtype=dtype)
    if state is not None:
        module.load_state_dict(state)
    return module.eval()


class LMHandle:
    """``logits`` / ``new_cache`` / ``step`` over a ``reference.model.DecoderOnlyLM``."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def logits(self, ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """Teacher-forced logits [b, l, vocab]."""
        out: Tensor = self.model(ids, pad_mask)
        return out

    def new_cache(self, batch: int) -> Any:
        """An empty KV cache."""
        return self.model.new_cache(batch)

    def step(self, ids_chunk: Tensor, cache: Any, pad_mask_chunk: Tensor | None = None) -> Tensor:
        """Logits of a chunk of new tokens on ``cache`` (which is updated)."""
        out: Tensor = self.model.step(ids_chunk, cache, pad_mask_chunk)
        return out


class EncoderHandle:
    """``hidden(ids, pad_mask)`` over a ``reference.variant_encdec.VariantEncoder``."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def hidden(self, ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """The last hidden states [b, l, d_model]."""
        out: Tensor = self.model(ids, pad_mask)
        return out


class ReferenceAdapter(Adapter):
    """The reference implementation as a target (all capabilities, project conventions)."""

    name = "reference"
    capabilities = frozenset(Capability)
    conventions = Conventions(dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16))

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """reference.attention.scaled_dot_product_attention with an optional bottom-right causal mask."""
        from transformer_conformance.reference.attention import scaled_dot_product_attention
        from transformer_conformance.reference.masks import causal_mask, combine_masks

        if is_causal:
            mask = combine_masks(mask, causal_mask(q.shape[-2], k.shape[-2], device=q.device))
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        return out, weights

    def attention_additive(self, q: Tensor, k: Tensor, v: Tensor, *, bias: Tensor) -> tuple[Tensor, Tensor]:
        """Attention with an additive float mask (0 = attend, -inf = masked)."""
        from transformer_conformance.reference.attention import scaled_dot_product_attention

        out, weights = scaled_dot_product_attention(q, k, v, bias)
        return out, weights

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """reference.multihead.MultiHeadAttention; key padding and attention mask are ANDed."""
        from transformer_conformance.reference.masks import combine_masks, key_padding_to_attention_mask
        from transformer_conformance.reference.multihead import MultiHeadAttention

        module = _build(lambda: MultiHeadAttention(d_model, num_heads), state, device, dtype)

        def run(
            x_q: Tensor, x_kv: Tensor, key_padding: Tensor | None = None, attn_mask: Tensor | None = None
        ) -> tuple[Tensor, Tensor | None]:
            padding = None if key_padding is None else key_padding_to_attention_mask(key_padding)
            out, weights = module(x_q, x_kv, combine_masks(padding, attn_mask))
            return out, weights

        return run

    def build_layer_norm(
        self, d: int, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[[Tensor], Tensor]:
        """reference.layernorm.LayerNorm (eps 1e-5)."""
        from transformer_conformance.reference.layernorm import LayerNorm

        module: Callable[[Tensor], Tensor] = _build(lambda: LayerNorm(d), state, device, dtype)
        return module

    def build_ffn(
        self,
        d_model: int,
        d_ff: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[[Tensor], Tensor]:
        """reference.ffn.PositionWiseFFN (ReLU)."""
        from transformer_conformance.reference.ffn import PositionWiseFFN

        module = _build(lambda: PositionWiseFFN(d_model, d_ff), state, device, dtype)
        run: Callable[[Tensor], Tensor] = module
        return run

    def positional_table(
        self, num_positions: int, d_model: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """reference.positional.sinusoidal_encoding (interleaved)."""
        from transformer_conformance.reference.positional import sinusoidal_encoding

        table: Tensor = sinusoidal_encoding(num_positions, d_model, dtype=dtype, device=device)
        return table

    def build_encoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """reference.encoder.EncoderLayer: (x, pad_mask) -> y."""
        from transformer_conformance.reference.encoder import EncoderLayer

        module: Callable[..., Tensor] = _build(lambda: EncoderLayer(config), state, device, dtype)
        return module

    def build_decoder_layer(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Callable[..., Tensor]:
        """reference.decoder.DecoderLayer: (x, memory, tgt_pad, mem_pad) -> y."""
        from transformer_conformance.reference.decoder import DecoderLayer

        module = _build(lambda: DecoderLayer(config), state, device, dtype)

        def run(
            x: Tensor, memory: Tensor, tgt_pad: Tensor | None = None, mem_pad: Tensor | None = None
        ) -> Tensor:
            out: Tensor = module(x, memory, tgt_pad, mem_pad)
            return out

        return run

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """reference.model.EncoderDecoder itself (encode / decode / new_cache / step), or a
        ``VariantEncoderDecoder`` for a config whose ``arch`` is not the notes' default."""
        from transformer_conformance.reference.architecture import Architecture
        from transformer_conformance.reference.model import EncoderDecoder
        from transformer_conformance.reference.variant_encdec import VariantEncoderDecoder

        if config.arch != Architecture():
            return _build(lambda: VariantEncoderDecoder(config), state, device, dtype)
        return _build(lambda: EncoderDecoder(config), state, device, dtype)

    def build_encoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """reference.variant_encdec.VariantEncoder behind ``EncoderHandle``."""
        from transformer_conformance.reference.variant_encdec import VariantEncoder

        return EncoderHandle(_build(lambda: VariantEncoder(config), state, device, dtype))

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Any:
        """reference.model.DecoderOnlyLM behind ``LMHandle`` (a ``VariantLM`` for a config whose
        ``arch`` is not the notes' default)."""
        from transformer_conformance.reference.architecture import Architecture
        from transformer_conformance.reference.model import DecoderOnlyLM
        from transformer_conformance.reference.variant_lm import VariantLM

        if config.arch != Architecture():
            return LMHandle(_build(lambda: VariantLM(config), state, device, dtype))
        return LMHandle(_build(lambda: DecoderOnlyLM(config), state, device, dtype))

    def sample(self, logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
        """reference.sampling.sample_next."""
        from transformer_conformance.reference.sampling import sample_next

        ids: Tensor = sample_next(logits, temperature=temperature, generator=generator)
        return ids

    def next_token_loss(self, logits: Tensor, ids: Tensor, pad_id: int | None) -> Tensor:
        """reference.loss.next_token_loss."""
        from transformer_conformance.reference.loss import next_token_loss

        loss: Tensor = next_token_loss(logits, ids, pad_id=pad_id)
        return loss


def make() -> ReferenceAdapter:
    """Factory for ``--impl reference``."""
    return ReferenceAdapter()
