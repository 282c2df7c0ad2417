"""The ``hf-bert``, ``hf-bart`` and ``hf-t5`` targets: transformers' encoder families, built offline.

No weights are downloaded: each model is built from a tiny config of the check's sizes (seeded random
init, ``HF_HUB_OFFLINE=1``). Each adapter declares its architecture and the config fields its family
fixes, so the checks build a ``reference.variant_encdec`` oracle of it and hand the adapter that
oracle's canonical state, mapped onto the model's names by ``reference.name_tables`` (HF_BERT, HF_BART,
HF_T5: a name table, no code).

- ``hf-bert``: ``BertModel`` without its pooler as an encoder-only model. Learned positions, an
  embedding LayerNorm, post-LN, exact GELU. The token-type table has no reference counterpart: the
  handle feeds type 0 everywhere and the adapter loads that row as zeros. ``hidden(ids, pad_mask)``
  passes the pad mask as ``attention_mask`` and the slots ``0 .. l-1`` as ``position_ids``.
- ``hf-bart``: ``BartForConditionalGeneration``: shared embeddings, learned positions read 2 rows on
  (BART's offset), ``layernorm_embedding``, post-LN, GELU, a tied head (``final_logits_bias`` stays 0).
- ``hf-t5``: ``T5ForConditionalGeneration``: relative position buckets (one table per stack), RMSNorm
  pre-LN with final norms, no ``1/sqrt(d)`` score scaling, ReLU FFN without biases, the tied head
  applied to the decoder output times ``d_model ** -0.5``. T5's RMSNorm computes its statistics in
  float32 whatever the model dtype, so the target declares float32 only.

The encoder-decoder handle (``EncDecHandle``) calls the model's own ``encoder`` for ``encode``, the full
model with ``encoder_outputs`` for ``decode`` and ``step`` (``decoder_attention_mask`` = the target
pad mask, remembered over the cache as ``hf-gpt2`` does), with an ``EncoderDecoderCache``.
"""

import importlib.util
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.name_tables import HF_BART, HF_BERT, HF_T5, NameTable, from_reference
from transformer_conformance.targets import TargetError
from transformer_conformance.targets.hf_gpt2 import BUILD_SEED, REQUIREMENT, _transformers

#: What ``BertModel`` is, in the reference's terms (with ``positional="learned"``).
BERT_ARCHITECTURE = Architecture(activation="gelu", embed_norm=True)
#: What ``BartForConditionalGeneration`` is (with ``positional="learned"``, ``tie_embeddings=True``).
BART_ARCHITECTURE = Architecture(
    activation="gelu", embed_norm=True, position_offset=2, shared_embeddings=True
)
#: What ``T5ForConditionalGeneration`` is (with ``tie_embeddings=True``, pre-norm).
T5_ARCHITECTURE = Architecture(
    positions="relative",
    relative_buckets=32,
    relative_max_distance=128,
    norm="rmsnorm",
    activation="relu",
    ffn_bias=False,
    qkv_bias=False,
    out_bias=False,
    attn_scale=1.0,
    shared_embeddings=True,
    head_rescale=True,
)


def _require(config: Any, arch: Architecture, placement: str, family: str, **fields: Any) -> None:
    """NotImplementedError unless ``config`` is what the family can be."""
    if config.arch != arch:
        raise NotImplementedError(f"{family} builds only its declared architecture, got {config.arch}")
    if config.norm_placement != placement:
        raise NotImplementedError(
            f"{family} is {placement}-norm only: norm_placement={config.norm_placement!r}"
        )
    for name, value in fields.items():
        if getattr(config, name) != value:
            raise NotImplementedError(f"{family} needs {name}={value!r}, got {getattr(config, name)!r}")


def hf_config(family: str, config: Any) -> Any:
    """The transformers config of ``family`` (bert, bart, t5) at the reference config's sizes.

    Claims: encoder.bert-equals-hf, encdec.bart-equals-hf, encdec.t5-equals-hf.
    """
    transformers = _transformers()
    c = config
    if family == "bert":
        _require(c, BERT_ARCHITECTURE, "post", "BERT", positional="learned", scale_embedding=False)
        return transformers.BertConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.d_model,
            num_hidden_layers=c.num_layers,
            num_attention_heads=c.num_heads,
            intermediate_size=c.d_ff,
            hidden_act="gelu",
            hidden_dropout_prob=c.dropout,
            attention_probs_dropout_prob=c.dropout,
            max_position_embeddings=c.max_len,
            layer_norm_eps=c.eps,
            pad_token_id=c.pad_id,
            attn_implementation="sdpa",
        )
    if family == "bart":
        _require(c, BART_ARCHITECTURE, "post", "BART", positional="learned", tie_embeddings=True)
        return transformers.BartConfig(
            vocab_size=c.vocab_size,
            d_model=c.d_model,
            encoder_layers=c.num_layers,
            decoder_layers=c.num_layers,
            encoder_attention_heads=c.num_heads,
            decoder_attention_heads=c.num_heads,
            encoder_ffn_dim=c.d_ff,
            decoder_ffn_dim=c.d_ff,
            activation_function="gelu",
            dropout=c.dropout,
            attention_dropout=c.dropout,
            activation_dropout=c.dropout,
            max_position_embeddings=c.max_len,
            scale_embedding=c.scale_embedding,
            pad_token_id=c.pad_id,
            bos_token_id=c.bos_id,
            eos_token_id=c.eos_id,
            decoder_start_token_id=c.eos_id,
            forced_eos_token_id=None,
            attn_implementation="sdpa",
        )
    _require(c, T5_ARCHITECTURE, "pre", "T5", tie_embeddings=True, scale_embedding=False)
    return transformers.T5Config(
        vocab_size=c.vocab_size,
        d_model=c.d_model,
        d_kv=c.d_head,
        d_ff=c.d_ff,
        num_layers=c.num_layers,
        num_decoder_layers=c.num_layers,
        num_heads=c.num_heads,
        relative_attention_num_buckets=c.arch.relative_buckets,
        relative_attention_max_distance=c.arch.relative_max_distance,
        dropout_rate=c.dropout,
        layer_norm_epsilon=c.eps,
        feed_forward_proj="relu",
        pad_token_id=c.pad_id,
        eos_token_id=c.eos_id,
        decoder_start_token_id=c.pad_id,
        attn_implementation="eager",
    )


def build_hf(
    family: str, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
) -> nn.Module:
    """The transformers model of ``family`` (seeded random init, or the canonical ``state`` mapped in)."""
    transformers = _transformers()
    hf = hf_config(family, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED)
        if family == "bert":
            model: nn.Module = transformers.BertModel(hf, add_pooling_layer=False)
        elif family == "bart":
            model = transformers.BartForConditionalGeneration(hf)
        else:
            model = transformers.T5ForConditionalGeneration(hf)
    model = model.to(device=device, dtype=dtype)
    table: NameTable = {"bert": HF_BERT, "bart": HF_BART, "t5": HF_T5}[family]
    if state is not None:
        mapped = from_reference(state, table, num_layers=config.num_layers, num_heads=config.num_heads)
        missing, unexpected = model.load_state_dict(mapped, strict=False)
        expected_missing = {"embeddings.token_type_embeddings.weight", "final_logits_bias"}
        if set(missing) - expected_missing or unexpected:
            raise RuntimeError(f"{family} weight mapping: missing {missing}, unexpected {unexpected}")
    loaded: Any = model
    with torch.no_grad():  # type 0 everywhere adds nothing; BART's logits bias is a zero buffer
        if family == "bert":
            loaded.embeddings.token_type_embeddings.weight.zero_()
        if family == "bart":
            loaded.final_logits_bias.zero_()
    return model.eval()


class BertHandle:
    """``hidden(ids, pad_mask)`` over a ``BertModel``: slot positions, token type 0."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def hidden(self, ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """``last_hidden_state`` [b, l, d_model]; ``pad_mask`` (True = real token) is the attention mask.

        Claims: encoder.model-padding-invariance, encoder.model-bidirectional.
        """
        mask = None if pad_mask is None else pad_mask.to(torch.long)
        positions = torch.arange(ids.shape[1], device=ids.device).expand(ids.shape[0], -1)
        with torch.no_grad():
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                token_type_ids=torch.zeros_like(ids),
                position_ids=positions,
            )
        hidden: Tensor = out.last_hidden_state
        return hidden


@dataclass
class EncDecCache:
    """transformers' ``EncoderDecoderCache`` for one batch and the decoder mask [b, past] of its slots."""

    kv: Any
    batch: int
    mask: Tensor | None = None


class EncDecHandle:
    """``encode`` / ``decode`` / ``new_cache`` / ``step`` over a transformers seq2seq model."""

    def __init__(self, model: nn.Module) -> None:
        self.model: Any = model

    @staticmethod
    def _mask(pad: Tensor | None) -> Tensor | None:
        return None if pad is None else pad.to(torch.long)

    def encode(self, src: Tensor, src_pad: Tensor | None = None) -> Tensor:
        """The encoder's ``last_hidden_state`` (the memory). Claims: encdec.memory-from-last-layer."""
        with torch.no_grad():
            out = self.model.get_encoder()(input_ids=src, attention_mask=self._mask(src_pad))
        memory: Tensor = out.last_hidden_state
        return memory

    def _decode(
        self, tgt: Tensor, memory: Tensor, src_pad: Tensor | None, mask: Tensor | None, **kw: Any
    ) -> Tensor:
        transformers = _transformers()
        encoded = transformers.modeling_outputs.BaseModelOutput(last_hidden_state=memory)
        with torch.no_grad():
            out = self.model(
                encoder_outputs=encoded,
                attention_mask=self._mask(src_pad),
                decoder_input_ids=tgt,
                decoder_attention_mask=mask,
                **kw,
            )
        logits: Tensor = out.logits
        return logits

    def decode(
        self, tgt: Tensor, memory: Tensor, src_pad: Tensor | None = None, tgt_pad: Tensor | None = None
    ) -> Tensor:
        """Teacher-forced logits [b, t, vocab] against ``memory``. Claims: encdec.teacher-forcing."""
        return self._decode(tgt, memory, src_pad, self._mask(tgt_pad), use_cache=False)

    def new_cache(self, batch: int) -> EncDecCache:
        """An empty ``EncoderDecoderCache``."""
        transformers = _transformers()
        config = getattr(self.model, "config", None)
        kv = transformers.EncoderDecoderCache(
            transformers.DynamicCache(config=config), transformers.DynamicCache(config=config)
        )
        return EncDecCache(kv, batch)

    def cache_kwargs(self, cache: EncDecCache) -> dict[str, Any]:
        """The cache argument under the name this transformers takes (``cache``, or ``past_key_values``
        before the 5.x rename), as ``hf_gpt2.GPT2Handle.cache_kwargs``."""
        params = inspect.signature(self.model.forward).parameters
        return {"cache" if "cache" in params else "past_key_values": cache.kv}

    def step(
        self,
        tgt_chunk: Tensor,
        memory: Tensor,
        cache: EncDecCache,
        src_pad: Tensor | None = None,
        tgt_pad_chunk: Tensor | None = None,
    ) -> Tensor:
        """Logits of ``c >= 1`` new target tokens on ``cache`` (updated in place); ``tgt_pad_chunk``
        (True = real token) is appended to the decoder mask the cache remembers.

        Claims: kvcache.equals-recompute, kvcache.chunked-prefill, encdec.cache-padded-prompts.
        """
        b, c = tgt_chunk.shape
        chunk = torch.ones(b, c, dtype=torch.long, device=tgt_chunk.device)
        if tgt_pad_chunk is not None:
            chunk = tgt_pad_chunk.to(torch.long)
        past = cache.mask if cache.mask is not None else chunk[:, :0]
        cache.mask = torch.cat([past, chunk], dim=1)
        return self._decode(
            tgt_chunk, memory, src_pad, cache.mask, **self.cache_kwargs(cache), use_cache=True
        )


class HFBertAdapter(Adapter):
    """``transformers.BertModel`` (no pooler) as an encoder-only model."""

    name = "hf-bert"
    capabilities = frozenset({Capability.ENCODER})
    conventions = Conventions(
        norm_placement="post", layer_norm_eps=1e-12, dtypes=(torch.float32, torch.float64)
    )
    architecture = BERT_ARCHITECTURE
    config_fields: ClassVar[Mapping[str, Any]] = {"positional": "learned"}

    def build_encoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> BertHandle:
        """``BertModel`` of the config's sizes behind ``BertHandle``."""
        return BertHandle(build_hf("bert", config, state, device, dtype))


class HFBartAdapter(Adapter):
    """``transformers.BartForConditionalGeneration`` as an encoder-decoder."""

    name = "hf-bart"
    capabilities = frozenset({Capability.ENCODER_DECODER})
    conventions = Conventions(
        norm_placement="post", layer_norm_eps=1e-5, dtypes=(torch.float32, torch.float64)
    )
    architecture = BART_ARCHITECTURE
    config_fields: ClassVar[Mapping[str, Any]] = {"positional": "learned", "tie_embeddings": True}

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> EncDecHandle:
        """``BartForConditionalGeneration`` of the config's sizes behind ``EncDecHandle``."""
        return EncDecHandle(build_hf("bart", config, state, device, dtype))


class HFT5Adapter(Adapter):
    """``transformers.T5ForConditionalGeneration`` as an encoder-decoder (float32: see module doc)."""

    name = "hf-t5"
    capabilities = frozenset({Capability.ENCODER_DECODER})
    conventions = Conventions(norm_placement="pre", layer_norm_eps=1e-6, dtypes=(torch.float32,))
    architecture = T5_ARCHITECTURE
    config_fields: ClassVar[Mapping[str, Any]] = {"tie_embeddings": True}

    def build_encoder_decoder(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> EncDecHandle:
        """``T5ForConditionalGeneration`` of the config's sizes behind ``EncDecHandle``."""
        return EncDecHandle(build_hf("t5", config, state, device, dtype))


def _check_installed(name: str) -> None:
    if importlib.util.find_spec("transformers") is None:
        raise TargetError(f"target {name!r} needs {REQUIREMENT!r}: pip install '{REQUIREMENT}'")


def make_bert() -> HFBertAdapter:
    """Factory for ``--impl hf-bert``."""
    _check_installed("hf-bert")
    return HFBertAdapter()


def make_bart() -> HFBartAdapter:
    """Factory for ``--impl hf-bart``."""
    _check_installed("hf-bart")
    return HFBartAdapter()


def make_t5() -> HFT5Adapter:
    """Factory for ``--impl hf-t5``."""
    _check_installed("hf-t5")
    return HFT5Adapter()
