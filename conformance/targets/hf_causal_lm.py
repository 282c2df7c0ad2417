"""The generic ``hf-causal-lm:<model_type>`` target: any decoder-only ``transformers`` architecture,
built offline from its default config shrunk to tiny sizes, audited with the metamorphic LM checks.

``--impl hf-causal-lm:llama`` (or ``:gpt2``, ``:mistral``, ...) builds
``AutoConfig.for_model(model_type)`` -- transformers' defaults for that architecture, no download --
shrinks it with ``tiny_config`` (2 layers, hidden 32, 4 heads, ...; ratios such as grouped-query heads
and MoE routing kept valid), and instantiates the class ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` names for
it with seeded random weights. ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` are set before
``transformers`` is imported. The metamorphic checks (causality, padding on both sides, batch
independence, cache == recompute, chunked prefill, padded cached prompts, determinism in eval, teacher
forcing) need no architecture and run on every model type. The loss is the model's own ``loss_function``.

Differential where a name table exists: a model type in ``LAYOUTS`` (llama, mistral, qwen2, gpt_neox)
declares the reference ``Architecture`` read from its tiny config (``declared_architecture``: RoPE theta
and fraction, key/value heads, sliding window, activation, and the layout's norm, gating, biases and
block), its eps and tying, and ``loads_weights=True`` at head width 8; ``build_lm`` then builds the model
at the check's sizes and maps the canonical ``VariantLM`` state in through the layout's name table
(``reference.name_tables``), so ``lm.reference`` runs. Every other model type declares
``loads_weights=False`` and ``lm.reference`` is not-applicable.

How the handle drives the model, as ``generate()`` does:

- position convention ``POSITION_IDS = "from_first_token"``: ``position_ids = cumsum(mask) - 1`` with pad
  slots set to 0, over the whole mask (past + chunk) of a cached step, sliced to the chunk -- a
  left-padded row's first real token is at position 0. Models whose forward takes no ``position_ids``
  (ALiBi models such as BLOOM and MPT) derive positions themselves from the attention mask;
- ``attention_mask`` is always passed (all ones without padding; 1 = real token), over past + chunk for
  a cached step: the cache does not remember which slots were padding, so the handle does;
- recurrent models (``CHUNK_MASK_TYPES``: Mamba and its kin) take the mask of the new chunk only,
  as their ``prepare_inputs_for_generation`` shows (it drops the mask after the first step); a mask over
  past + chunk is silently misread by them;
- a model that returns no cache (GPT-1, RWKV's state under another name) is fed the whole sequence at
  each step, as ``generate()`` does with ``use_cache=False``: its cache checks then test that path;
- the cache is the one the model creates itself on a first call with ``use_cache=True`` (a
  ``DynamicCache`` for attention models, the model's own cache class for hybrid/recurrent ones),
  handed back through ``cache=`` (transformers 5's name; ``past_key_values=`` on older versions).

Config dropouts (every float attribute whose name contains ``dropout``, ``pdrop`` or ``jitter``) take
the check's ``dropout``, so ``lm.determinism`` tests that eval mode switches them all off.
"""

import importlib.util
import inspect
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.name_tables import (
    HF_GPT_NEOX,
    HF_LLAMA,
    HF_QWEN2,
    NameTable,
    from_reference,
)
from transformer_conformance.targets import TargetError

#: The prefix of the target names this adapter serves: ``hf-causal-lm:<model_type>``.
PREFIX = "hf-causal-lm:"
REQUIREMENT = "transformers>=5.0"
BUILD_SEED = 0
#: How positions are counted under left padding (the reference ``Architecture.position_ids`` names).
POSITION_IDS: Literal["from_first_token"] = "from_first_token"

#: Tiny sizes. Hidden 32 with 4 heads gives a head width of 8 (rotary codes need an even one).
TINY_LAYERS, TINY_HIDDEN, TINY_HEADS, TINY_FF = 2, 32, 4, 64
TINY_EXPERTS, TINY_EXPERTS_PER_TOKEN, TINY_WINDOW, TINY_MAX_POSITIONS = 4, 2, 4, 128

#: Common config attribute names for each size (the first that a config has is set; all present are).
LAYER_NAMES = ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "decoder_layers", "encoder_layers")
HIDDEN_NAMES = ("hidden_size", "n_embd", "d_model", "dim", "embed_dim", "model_dim")
HEAD_NAMES = (
    "num_attention_heads",
    "n_head",
    "num_heads",
    "n_heads",
    "decoder_attention_heads",
    "encoder_attention_heads",
)
KV_HEAD_NAMES = ("num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num")
FF_NAMES = (
    "intermediate_size",
    "n_inner",
    "ffn_dim",
    "d_ff",
    "ffn_hidden_size",
    "decoder_ffn_dim",
    "encoder_ffn_dim",
    "moe_intermediate_size",
    "shared_expert_intermediate_size",
    "expert_intermediate_size",
)
EXPERT_NAMES = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
EXPERTS_PER_TOKEN_NAMES = ("num_experts_per_tok", "moe_topk", "top_k", "num_selected_experts")
POSITION_NAMES = ("max_position_embeddings", "n_positions", "max_seq_len", "n_ctx", "seq_length")
#: Sub-configs that hold the language model of a composite config (shrunk like the top level).
SUB_CONFIG_NAMES = (
    "text_config",
    "decoder",
    "attn_config",
    "ffn_config",
    "text_decoder",
    "vision_config",
    "audio_config",
)
#: The per-model-type data (``hf_causal_lm_types.toml``, next to this module): overrides after the
#: generic shrink, model types not built and not driven, each with its reason.
TYPES_FILE = Path(__file__).with_name("hf_causal_lm_types.toml")


@dataclass(frozen=True)
class Override:
    """Fields set after the generic shrink for one model type (a dict value for a sub-config is merged
    into it), and why the generic size names miss them."""

    values: dict[str, Any]
    reason: str
    #: It builds without the override, but too slowly for the sweep (otherwise the build fails).
    for_time: bool = False


def load_types(path: Path = TYPES_FILE) -> tuple[dict[str, Override], dict[str, str], dict[str, str]]:
    """(overrides, not built, not driven) from the per-model-type TOML file; ValueError for an entry
    without a reason, an override without fields, or a model type in more than one section.
    Claims: sizes.base.
    """
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    unknown = set(data) - {"override", "not_built", "not_driven"}
    if unknown:
        raise ValueError(f"{path.name}: unknown sections {sorted(unknown)}")
    for section, entries in data.items():
        for model_type, entry in entries.items():
            if not str(entry.get("reason", "")).strip():
                raise ValueError(f"{path.name}: [{section}.{model_type}] has no reason")
            if section == "override" and not entry.get("set"):
                raise ValueError(f"{path.name}: [override.{model_type}] sets nothing")
    seen: dict[str, str] = {}
    for section, entries in data.items():
        for model_type in entries:
            if model_type in seen:
                raise ValueError(f"{path.name}: {model_type!r} in both [{seen[model_type]}] and [{section}]")
            seen[model_type] = section
    overrides = {
        t: Override(dict(e["set"]), str(e["reason"]), bool(e.get("for_time", False)))
        for t, e in data.get("override", {}).items()
    }
    not_built = {t: str(e["reason"]) for t, e in data.get("not_built", {}).items()}
    not_driven = {t: str(e["reason"]) for t, e in data.get("not_driven", {}).items()}
    return overrides, not_built, not_driven


#: Per model type: overrides, types not built tiny offline (with the reason), types not driven.
TYPE_OVERRIDES, NOT_BUILT, NOT_DRIVEN = load_types()

#: Model types whose ``attention_mask`` covers the new chunk only on a cached step (state-space models).
CHUNK_MASK_TYPES = frozenset({"mamba", "mamba2", "falcon_mamba"})
TOKEN_ID_NAMES = ("pad_token_id", "bos_token_id", "eos_token_id")
RANDOM_NAMES = ("dropout", "pdrop", "jitter")
#: Per-layer type lists of hybrid models (attention, linear attention, recurrent, ...).
LAYER_TYPE_NAMES = ("layer_types", "layers_block_type", "block_types")
#: Periodic attention layouts (Jamba): attention every 2nd layer from layer 1, so 2 layers hold both.
PERIOD_OVERRIDES = {
    "attn_layer_period": 2,
    "attn_layer_offset": 1,
    "expert_layer_period": 2,
    "expert_layer_offset": 1,
}


def _transformers() -> Any:
    """Import ``transformers`` with the Hub switched off (nothing is ever downloaded)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import transformers

    return transformers


def _has(config: Any, name: str) -> bool:
    return isinstance(getattr(config, name, None), int) and not isinstance(getattr(config, name), bool)


def _derived(config: Any, name: str) -> bool:
    """Whether ``name`` is a read-only property computed from other fields (not to be set)."""
    return isinstance(getattr(type(config), name, None), property)


def _settable(config: Any, name: str) -> bool:
    """An integer field of ``config`` that is stored, not computed (a property such as Falcon's
    ``head_dim`` follows from the others)."""
    return _has(config, name) and not _derived(config, name)


def _is_config(value: Any) -> bool:
    return hasattr(value, "to_dict") and hasattr(value, "model_type")


def tiny_overrides(
    default: Any,
    vocab_size: int,
    dropout: float,
    pad_id: int,
    window: int = TINY_WINDOW,
    sizes: tuple[int, int, int, int] = (TINY_LAYERS, TINY_HIDDEN, TINY_HEADS, TINY_FF),
) -> dict[str, Any]:
    """The keyword overrides that shrink ``default`` (a config of transformers' defaults) to tiny sizes.

    Layers 2, hidden 32, heads 4 (head_dim 8), key/value heads 2 where the default groups queries (1 when
    it is multi-query), FFN width 64, 4 experts with 2 per token, sliding windows of 4 (so windows act at
    the checks' lengths), 128 positions, the check's vocabulary; token ids inside the vocabulary; every
    dropout-like float set to ``dropout``. Only attributes the config has are overridden. ``sizes``
    (layers, hidden, heads, FFN width) replaces the tiny ones (a differential build takes the check's).
    Claims: sizes.base (the same architecture at small sizes).
    """
    out: dict[str, Any] = {"vocab_size": vocab_size}
    n_layers, hidden, n_heads, ff = sizes
    heterogeneous = vars(default).get("_heterogeneity_spec")
    if heterogeneous is not None:  # per-layer sizes (Gemma 4): read the global ones, scale the others below
        default.allow_global_per_layer_attribute_access = True
    heads = next((getattr(default, n) for n in HEAD_NAMES if _has(default, n)), n_heads)
    for names, value in (
        (LAYER_NAMES, n_layers),
        (HIDDEN_NAMES, hidden),
        (HEAD_NAMES, n_heads),
        (FF_NAMES, ff),
        (EXPERT_NAMES, TINY_EXPERTS),
        (EXPERTS_PER_TOKEN_NAMES, TINY_EXPERTS_PER_TOKEN),
        (POSITION_NAMES, TINY_MAX_POSITIONS),
    ):
        out.update({n: value for n in names if _settable(default, n)})
    for name in KV_HEAD_NAMES:
        if _settable(default, name):
            kv = getattr(default, name)
            out[name] = n_heads if kv >= heads else (1 if kv == 1 else n_heads // 2)
    unset_head_dim = hasattr(default, "head_dim") and default.head_dim is None
    if _settable(default, "head_dim") or (unset_head_dim and not _derived(default, "head_dim")):
        out["head_dim"] = hidden // n_heads  # also an unset one (Ministral, Hunyuan: None breaks RoPE)
    if _settable(default, "sliding_window"):
        out["sliding_window"] = window
    for name in TOKEN_ID_NAMES:
        if hasattr(default, name):
            out[name] = pad_id if name == "pad_token_id" else None
    for name, value in vars(default).items():
        if isinstance(value, float) and any(part in name for part in RANDOM_NAMES):
            out[name] = dropout
    out.update({n: v for n, v in PERIOD_OVERRIDES.items() if _has(default, n)})
    if isinstance(getattr(default, "causal", None), bool):
        out["causal"] = True  # XLM: a language model only with causal=True (is_decoder is not read)
    for name in LAYER_TYPE_NAMES:
        types = getattr(default, name, None)
        if isinstance(types, list) and types and name in vars(default):  # stored, not computed
            # the shortest prefix that holds every kind of layer, and at least TINY_LAYERS layers
            needed = max(types.index(kind) for kind in set(types)) + 1
            layers = max(n_layers, needed)
            out[name] = types[:layers]
            out.update({n: layers for n in LAYER_NAMES if _settable(default, n)})
    if heterogeneous is not None:
        out["per_layer_config"] = _tiny_per_layer(default, heterogeneous.per_layer_overrides, out, n_layers)
    for name in SUB_CONFIG_NAMES:
        # the language model of a composite config, shrunk the same way
        sub = getattr(default, name, None)
        if sub is not None and _is_config(sub):
            shrunk = tiny_overrides(sub, vocab_size, dropout, pad_id, window, sizes)
            if not hasattr(sub, "vocab_size"):
                shrunk.pop("vocab_size")
            out[name] = {**sub.to_dict(), **shrunk}
    return out


def _tiny_per_layer(
    default: Any, per_layer: dict[int, dict[str, Any]], shrunk: dict[str, Any], n_layers: int
) -> dict[int, dict[str, Any]]:
    """The per-layer overrides of a heterogeneous config for the layers kept, each integer scaled as its
    global value was (Gemma 4's full-attention head width 512 of 256 -> 16 of 8).
    Claims: sizes.base.
    """
    layers = next((shrunk[n] for n in LAYER_NAMES if n in shrunk), n_layers)
    out: dict[int, dict[str, Any]] = {}
    for index, values in per_layer.items():
        if int(index) >= layers:
            continue
        out[int(index)] = {}
        for key, value in values.items():
            base = getattr(default, key, None)
            scalable = _has(default, key) and isinstance(value, int) and base and key in shrunk
            out[int(index)][key] = max(1, round(shrunk[key] * value / base)) if scalable else value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``; a dict in both (a sub-config) is merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def tiny_config(
    model_type: str,
    vocab_size: int,
    dropout: float = 0.0,
    pad_id: int = 0,
    window: int = TINY_WINDOW,
    sizes: tuple[int, int, int, int] = (TINY_LAYERS, TINY_HIDDEN, TINY_HEADS, TINY_FF),
    extra: dict[str, Any] | None = None,
) -> Any:
    """``AutoConfig.for_model(model_type)`` rebuilt with ``tiny_overrides`` (so derived fields such as
    per-layer ``layer_types`` follow) and ``extra``, decoder mode on.
    Claims: sizes.base.
    """
    # the config class the causal-LM class takes: the text config of a composite (Llama 4, Qwen 3.5)
    config_class = model_class(model_type).config_class
    default = config_class()
    overrides = _merge(tiny_overrides(default, vocab_size, dropout, pad_id, window, sizes), extra or {})
    if model_type in TYPE_OVERRIDES:
        overrides = _merge(overrides, TYPE_OVERRIDES[model_type].values)
    config = config_class(**overrides, is_decoder=True)
    layers = next((getattr(config, n) for n in LAYER_NAMES if _has(config, n)), TINY_LAYERS)
    for name in LAYER_TYPE_NAMES:
        value = getattr(config, name, None)
        if isinstance(value, list) and len(value) > layers and name in vars(config):
            setattr(config, name, value[:layers])
    return config


def model_class(model_type: str) -> Any:
    """The ``*ForCausalLM`` class transformers maps ``model_type`` to (TargetError when there is none)."""
    transformers = _transformers()
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    if names is None:
        raise TargetError(f"target '{PREFIX}{model_type}': {model_type!r} is no causal-LM model type")
    name = names[0] if isinstance(names, (tuple, list)) else names
    return getattr(transformers, name)


def build_causal_lm(
    model_type: str,
    config: Any,
    device: torch.device,
    dtype: torch.dtype,
    window: int = TINY_WINDOW,
    sizes: tuple[int, int, int, int] = (TINY_LAYERS, TINY_HIDDEN, TINY_HEADS, TINY_FF),
    extra: dict[str, Any] | None = None,
) -> tuple[nn.Module, Any]:
    """(model in eval mode on device/dtype, its tiny config): seeded random init of the tiny config."""
    hf_config = tiny_config(
        model_type, config.vocab_size, config.dropout, config.pad_id, window, sizes, extra
    )
    cls = model_class(model_type)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED)
        model: nn.Module = cls(hf_config)
    return model.to(device=device, dtype=dtype).eval(), hf_config


@dataclass(frozen=True)
class Layout:
    """How one model type maps onto the reference: the name table of its weights and, for each choice
    the reference ``Architecture`` makes, the value or the name of the HF config attribute that holds it
    (a ``str``: read from the config; a ``bool``: fixed by the model type). Rotary parameters (theta,
    partial fraction), key/value heads, the sliding window, the activation and tied embeddings are read
    from every config the same way (``declared_architecture``).

    Claims: lm.llama-equals-hf, lm.neox-equals-hf.
    """

    table: NameTable
    norm: Literal["layernorm", "rmsnorm"]
    gated: bool
    eps: str
    qkv_bias: bool | str = False
    out_bias: bool | str = False
    ffn_bias: bool | str = False
    parallel: bool | str = False


#: Model types the generic adapter loads the reference's weights into (differential ``lm.reference``).
_LLAMA_BIASES = {"qkv_bias": "attention_bias", "out_bias": "attention_bias", "ffn_bias": "mlp_bias"}
LAYOUTS: dict[str, Layout] = {
    "llama": Layout(HF_LLAMA, "rmsnorm", gated=True, eps="rms_norm_eps", **_LLAMA_BIASES),
    "mistral": Layout(HF_LLAMA, "rmsnorm", gated=True, eps="rms_norm_eps"),
    "qwen2": Layout(HF_QWEN2, "rmsnorm", gated=True, eps="rms_norm_eps", qkv_bias=True),
    "gpt_neox": Layout(
        HF_GPT_NEOX,
        "layernorm",
        gated=False,
        eps="layer_norm_eps",
        qkv_bias="attention_bias",
        out_bias="attention_bias",
        ffn_bias=True,
        parallel="use_parallel_residual",
    ),
}
#: transformers' ``hidden_act`` names -> the reference's activation names.
ACTIVATIONS = {"silu": "silu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}


def _flag(hf_config: Any, value: bool | str) -> bool:
    return bool(getattr(hf_config, value)) if isinstance(value, str) else value


def declared_architecture(hf_config: Any, layout: Layout) -> Architecture:
    """The reference ``Architecture`` of a (tiny) HF config of a model type with a ``Layout``: rotary
    positions counted from the first real token (the handle's ``position_ids``), the layout's norm, gating
    and biases, the config's rotary theta and fraction, key/value heads, window and activation.
    NotImplementedError for what the reference cannot express (scaled rotary, mixed layer types).

    Claims: lm.llama-equals-hf, lm.neox-equals-hf, gqa.repeat-equivalence, window.blind-outside.
    """
    rope = dict(getattr(hf_config, "rope_parameters", None) or {})
    if rope.get("rope_type", "default") != "default" or "rope_theta" not in rope:
        raise NotImplementedError(f"rotary parameters {rope} are not the reference's plain RoPE")
    act = ACTIVATIONS.get(str(getattr(hf_config, "hidden_act", "")))
    if act is None:
        raise NotImplementedError(f"activation {getattr(hf_config, 'hidden_act', None)!r}: no reference name")
    window = getattr(hf_config, "sliding_window", None)
    if getattr(hf_config, "use_sliding_window", True) is False:
        window = None
    kinds = set(getattr(hf_config, "layer_types", None) or ())
    if kinds - {"full_attention", "sliding_attention"} or len(kinds) > 1:
        raise NotImplementedError(f"per-layer attention types {sorted(kinds)} differ; the reference has one")
    if kinds == {"full_attention"}:
        window = None
    heads = hf_config.num_attention_heads
    kv = getattr(hf_config, "num_key_value_heads", None) or heads
    return Architecture(
        positions="rotary",
        rope_theta=float(rope["rope_theta"]),
        rope_fraction=float(rope.get("partial_rotary_factor", 1.0)),
        rope_layout="half",
        position_ids=POSITION_IDS,
        norm=layout.norm,
        activation=act,  # type: ignore[arg-type]
        gated=layout.gated,
        ffn_bias=_flag(hf_config, layout.ffn_bias),
        num_kv_heads=None if kv == heads else kv,
        sliding_window=window,
        qkv_bias=_flag(hf_config, layout.qkv_bias),
        out_bias=_flag(hf_config, layout.out_bias),
        block="parallel" if _flag(hf_config, layout.parallel) else "sequential",
    )


@dataclass
class CausalLMCache:
    """The model's own cache object (None until the first step) and the attention mask [b, past]."""

    batch: int
    kv: Any = None
    mask: Tensor | None = field(default=None)
    #: For a model that returns no cache (``generate()`` then feeds it the whole sequence): the ids so far.
    ids: Tensor | None = None

    @property
    def past(self) -> int:
        """Slots already in the cache."""
        return 0 if self.mask is None else int(self.mask.shape[1])


def generate_positions(mask: Tensor) -> Tensor:
    """``position_ids`` as ``generate()`` computes them: ``cumsum(mask) - 1``, pad slots set to 0.

    Claims: positional.from-first-token convention (``POSITION_IDS``).
    """
    positions = mask.long().cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 0)


class CausalLMHandle:
    """``logits`` / ``new_cache`` / ``step`` over any ``*ForCausalLM`` model (see module doc)."""

    def __init__(self, model: nn.Module, chunk_mask_only: bool = False) -> None:
        self.model = model
        self.chunk_mask_only = chunk_mask_only
        params = inspect.signature(model.forward).parameters
        self.takes_positions = "position_ids" in params
        self.cache_kwarg = "cache" if "cache" in params else "past_key_values"

    def _run(self, ids: Tensor, mask: Tensor, cache: CausalLMCache | None) -> Tensor:
        c = ids.shape[1]
        kwargs: dict[str, Any] = {
            "attention_mask": mask[:, -c:] if self.chunk_mask_only else mask,
            "use_cache": cache is not None,
        }
        if self.takes_positions:
            kwargs["position_ids"] = generate_positions(mask)[:, -c:]
        if cache is not None and cache.kv is not None:
            kwargs[self.cache_kwarg] = cache.kv
        with torch.no_grad():
            out = self.model(input_ids=ids, **kwargs)
        if cache is not None:
            returned = getattr(out, "cache", None)
            cache.kv = returned if returned is not None else getattr(out, "past_key_values", None)
        logits: Tensor = out.logits
        return logits

    def logits(self, ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """Teacher-forced logits [b, l, vocab]; ``pad_mask`` (True = real token) is the attention mask.

        Claims: mask.padding.invariance, mask.causal.future-blind.
        """
        mask = torch.ones_like(ids) if pad_mask is None else pad_mask.to(torch.long)
        return self._run(ids, mask, None)

    def new_cache(self, batch: int) -> CausalLMCache:
        """An empty cache: the model creates its own cache object on the first step."""
        return CausalLMCache(batch)

    def step(self, ids_chunk: Tensor, cache: CausalLMCache, pad_mask_chunk: Tensor | None = None) -> Tensor:
        """Logits of ``c >= 1`` new tokens on ``cache``; the mask over past + chunk is passed whole.

        Claims: kvcache.equals-recompute, kvcache.chunked-prefill, mask.padding.invariance.
        """
        chunk_mask = torch.ones_like(ids_chunk) if pad_mask_chunk is None else pad_mask_chunk.to(torch.long)
        past = cache.mask if cache.mask is not None else chunk_mask[:, :0]
        cache.mask = torch.cat([past, chunk_mask], dim=1)
        if cache.ids is not None:
            cache.ids = torch.cat([cache.ids, ids_chunk], dim=1)
            return self._run(cache.ids, cache.mask, None)[:, -ids_chunk.shape[1] :]
        logits = self._run(ids_chunk, cache.mask, cache)
        if cache.kv is None:
            cache.ids = ids_chunk
        return logits


class HFCausalLMAdapter(Adapter):
    """Any ``transformers`` decoder-only model type at tiny sizes, with its own loss function."""

    capabilities = frozenset({Capability.DECODER_LM, Capability.LOSS})
    conventions = Conventions(norm_placement="pre", loads_weights=False, dtypes=(torch.float32,))
    handle_class: type[CausalLMHandle] = CausalLMHandle

    def __init__(
        self,
        model_type: str,
        sliding_window: int = TINY_WINDOW,
        layout: Layout | None = None,
        architecture: Architecture | None = None,
    ) -> None:
        """``layout`` (default: ``LAYOUTS[model_type]``, if any) makes the adapter load the reference's
        weights and declare the architecture read from the tiny config (``architecture`` overrides it)."""
        self.model_type = model_type
        self.sliding_window = sliding_window
        self.name = PREFIX + model_type
        self._loss_model: nn.Module | None = None
        self.layout = layout if layout is not None else LAYOUTS.get(model_type)
        if self.layout is not None:
            hf_config = tiny_config(model_type, vocab_size=TINY_HIDDEN, window=sliding_window)
            self.architecture = architecture or declared_architecture(hf_config, self.layout)
            self.conventions = replace(
                self.conventions,
                loads_weights=True,
                layer_norm_eps=float(getattr(hf_config, self.layout.eps)),
                supported_d_heads=(TINY_HIDDEN // TINY_HEADS,),
            )
            # per model type, so per instance (a class-level declaration elsewhere)
            self.config_fields = {"tie_embeddings": bool(hf_config.tie_word_embeddings)}  # type: ignore[misc]

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> CausalLMHandle:
        """The model type at tiny sizes: random weights, or for a model type with a ``Layout`` the
        config's sizes, eps and tying with the canonical ``state`` mapped in by the layout's name table."""
        if self.layout is None:
            model, _ = build_causal_lm(self.model_type, config, device, dtype, self.sliding_window)
            return self.handle_class(model, self.model_type in CHUNK_MASK_TYPES)
        sizes = (config.num_layers, config.d_model, config.num_heads, config.d_ff)
        extra = {self.layout.eps: config.eps, "tie_word_embeddings": config.tie_embeddings}
        model, _ = build_causal_lm(self.model_type, config, device, dtype, self.sliding_window, sizes, extra)
        if state is not None:
            mapped = from_reference(
                state, self.layout.table, num_layers=config.num_layers, num_heads=config.num_heads
            )
            missing, unexpected = model.load_state_dict(mapped, strict=False)
            tied = {"lm_head.weight"} if config.tie_embeddings else set()
            if set(missing) - tied or unexpected:
                raise RuntimeError(
                    f"{self.layout.table.name} weight mapping: missing {missing}, unexpected {unexpected}"
                )
        return self.handle_class(model.eval(), self.model_type in CHUNK_MASK_TYPES)

    def next_token_loss(self, logits: Tensor, ids: Tensor, pad_id: int | None) -> Tensor:
        """The model class's own ``loss_function`` (what ``labels=`` runs) on ``labels = ids``, pads -> -100.

        Claims: loss.shifted-cross-entropy, loss.ignores-padding.
        """
        if self._loss_model is None:
            from transformer_conformance.reference.config import TransformerConfig

            tiny = TransformerConfig.tiny(vocab_size=logits.shape[-1])
            self._loss_model, _ = build_causal_lm(self.model_type, tiny, torch.device("cpu"), torch.float32)
        labels = ids if pad_id is None else ids.masked_fill(ids == pad_id, -100)
        loss_model: Any = self._loss_model
        loss_function: Any = loss_model.loss_function
        loss: Tensor = loss_function(logits, labels, vocab_size=logits.shape[-1])
        return loss


def make(model_type: str) -> HFCausalLMAdapter:
    """Factory for ``--impl hf-causal-lm:<model_type>``; a usage error without transformers or for a
    model type that has no causal-LM class."""
    if importlib.util.find_spec("transformers") is None:
        raise TargetError(f"target '{PREFIX}{model_type}' needs {REQUIREMENT!r}: pip install '{REQUIREMENT}'")
    model_class(model_type)
    if model_type in NOT_BUILT:
        raise TargetError(f"target '{PREFIX}{model_type}': not built at tiny size: {NOT_BUILT[model_type]}")
    if model_type in NOT_DRIVEN:
        raise TargetError(
            f"target '{PREFIX}{model_type}': not driven by this adapter: {NOT_DRIVEN[model_type]}"
        )
    return HFCausalLMAdapter(model_type)
