"""The ``hf-gpt2`` target: Hugging Face ``transformers``' ``GPT2LMHeadModel``, built offline.

No weights are downloaded: the model is built from a ``GPT2Config`` of the check's sizes (random init,
seeded), and ``HF_HUB_OFFLINE=1`` is set before ``transformers`` is imported. When the check gives the
reference's canonical ``state_dict`` it is loaded into GPT-2's own layout, so the differential check
``lm.reference`` runs too (``loads_weights=True``).

GPT-2 is a pre-LN decoder (``x + attn(ln_1(x))``, ``x + mlp(ln_2(x))``, a final ``ln_f``) with learned
positions, a bias-free output head and ``Conv1D`` layers that store weights as ``[in, out]``. The
canonical weights map onto it with:

- ``embed -> wte``, ``lm_head -> lm_head`` (tied or not, as the config says);
- ``w_q, w_k, w_v -> c_attn.weight = cat(w_q, w_k, w_v).T`` (biases concatenated), ``w_o -> attn.c_proj``
  transposed, ``ffn.w_1 / w_2 -> mlp.c_fc / mlp.c_proj`` transposed, ``norm_1 / norm_2 -> ln_1 / ln_2``,
  ``final_norm -> ln_f``;
- positions: a learned table ``pos_embed -> wpe``; for sinusoidal positions ``wpe`` holds the sinusoidal
  table of ``max_len`` rows (GPT-2's position embedding is a lookup table, so any fixed table fits).

The activation comes from the config (GPT-2's ``activation_function`` takes ``"relu"`` and exact
``"gelu"``); embedding scaling and post-LN have no GPT-2 counterpart and raise ``NotImplementedError``.
Attention runs on ``attn_implementation="sdpa"`` (transformers' default on torch 2.x).

How the handle drives the model, as a careful user would:

- ``logits(ids, pad_mask)``: ``attention_mask = pad_mask`` (1 = real token) and explicit
  ``position_ids``. Positions are *absolute slots* ``0 .. l-1`` -- the spec's convention (the reference
  places token ``j`` at position ``j`` whatever the padding), which ``lm.reference`` compares against
  with left padding. (``transformers``' ``generate()`` instead counts positions from the first real token,
  ``cumsum(mask) - 1``; that is a different convention, not a bug. The metamorphic checks cannot tell
  the two apart: they only compare inputs with the same padding layout.)
- ``new_cache(batch)``: an empty ``DynamicCache`` plus the attention mask of its slots;
  ``step(chunk, cache, pad_mask_chunk)``: the cache (``cache=``, see ``cache_kwargs``) with
  ``position_ids = past + 0 .. c-1`` (``past = cache.get_seq_length()``, absolute slots again) and
  ``attention_mask`` = the remembered mask over past slots + the chunk's mask (all ones when None),
  for single tokens, chunked prefill and padded prompts alike. ``DynamicCache`` keeps no mask, so the
  handle must: transformers does not reject a mask shorter than past + chunk, it right-pads it with
  zeros, silently hiding the newest keys.

The loss is ``LOSS_MAPPING["ForCausalLM"]`` (``GPT2LMHeadModel.loss_function``, what ``labels=`` runs)
on ``labels = ids`` with ``pad_id`` replaced by ``-100``: transformers does the shift and the ignoring.
It upcasts with ``logits.float()``, so float64 logits give a float32 loss (returned as is).

The sampler is ``transformers``' own ``TemperatureLogitsWarper`` followed by the step ``generate()``
uses (``softmax`` then ``torch.multinomial``), with the check's generator. The warper rejects any
temperature that is not a strictly positive float, 0 included: ``temperature_zero="error"``.
"""

import importlib.util
import inspect
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.targets import TargetError

#: The requirement this target was written and audited against (transformers 5.x's GPT-2 included).
REQUIREMENT = "transformers>=4.40"

#: Seed for models built without a ``state`` (fresh weights are reproducible).
BUILD_SEED = 0


def _transformers() -> Any:
    """Import ``transformers`` with the Hub switched off (nothing is ever downloaded)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import transformers

    return transformers


def gpt2_config(config: Any) -> Any:
    """A ``GPT2Config`` of the reference config's sizes, activation, dropout, eps and tying.

    Claims: sizes.base (same model family at the check's sizes), residual.pre-ln.
    """
    if config.norm_placement != "pre":
        raise NotImplementedError(f"GPT-2 is pre-LN only: norm_placement={config.norm_placement!r}")
    if config.scale_embedding:
        raise NotImplementedError("GPT-2 has no embedding scaling: scale_embedding=True is unsupported")
    transformers = _transformers()
    hf = transformers.GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.max_len,
        n_embd=config.d_model,
        n_layer=config.num_layers,
        n_head=config.num_heads,
        n_inner=config.d_ff,
        activation_function=config.activation,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        layer_norm_epsilon=config.eps,
        tie_word_embeddings=config.tie_embeddings,
        bos_token_id=config.bos_id,
        eos_token_id=config.eos_id,
    )
    hf._attn_implementation = "sdpa"
    return hf


def _position_table(config: Any, state: dict[str, Tensor]) -> Tensor:
    """GPT-2's ``wpe`` rows: the learned table, or the sinusoidal table of ``max_len`` positions."""
    if config.positional == "learned":
        return state["pos_embed.weight"]
    from transformer_conformance.reference.positional import sinusoidal_encoding

    like = state["embed.weight"]
    table: Tensor = sinusoidal_encoding(
        config.max_len, config.d_model, layout=config.layout, dtype=like.dtype, device=like.device
    )
    return table


#: reference linear -> GPT-2 Conv1D (weights transposed: Conv1D stores [in, out]).
_LINEARS = (("self_attn.w_o", "attn.c_proj"), ("ffn.w_1", "mlp.c_fc"), ("ffn.w_2", "mlp.c_proj"))


def gpt2_state(config: Any, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """GPT-2 parameter names and layouts from a canonical ``DecoderOnlyLM`` state (see module doc).

    Claims: mha.fused-equals-per-head (``c_attn`` is the three projections stacked),
    embedding.plus-positional.
    """
    out = {
        "transformer.wte.weight": state["embed.weight"],
        "transformer.wpe.weight": _position_table(config, state),
        "transformer.ln_f.weight": state["decoder.final_norm.weight"],
        "transformer.ln_f.bias": state["decoder.final_norm.bias"],
        "lm_head.weight": state["lm_head.weight"],
    }
    for i in range(config.num_layers):
        ref, hf = f"decoder.layers.{i}.", f"transformer.h.{i}."
        qkv = [state[f"{ref}self_attn.w_{x}.weight"] for x in "qkv"]
        out[f"{hf}attn.c_attn.weight"] = torch.cat(qkv, dim=0).T
        out[f"{hf}attn.c_attn.bias"] = torch.cat([state[f"{ref}self_attn.w_{x}.bias"] for x in "qkv"])
        for src, dst in _LINEARS:
            out[f"{hf}{dst}.weight"] = state[f"{ref}{src}.weight"].T
            out[f"{hf}{dst}.bias"] = state[f"{ref}{src}.bias"]
        for src, dst in (("norm_1", "ln_1"), ("norm_2", "ln_2")):
            for kind in ("weight", "bias"):
                out[f"{hf}{dst}.{kind}"] = state[f"{ref}{src}.{kind}"]
    return {k: v.contiguous() for k, v in out.items()}


def build_gpt2(
    config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
) -> nn.Module:
    """``GPT2LMHeadModel`` (seeded random init, or ``state`` mapped in), on device/dtype, in eval mode."""
    transformers = _transformers()
    hf_config = gpt2_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED)
        model: nn.Module = transformers.GPT2LMHeadModel(hf_config)
    model = model.to(device=device, dtype=dtype)
    if state is not None:
        mapped = gpt2_state(config, state)
        missing, unexpected = model.load_state_dict(mapped, strict=False)
        tied = {"lm_head.weight"} if config.tie_embeddings else set()
        if set(missing) - tied or unexpected:
            raise RuntimeError(f"GPT-2 weight mapping: missing {missing}, unexpected {unexpected}")
    return model.eval()


@dataclass
class GPT2Cache:
    """transformers' ``DynamicCache`` for one batch, and the attention mask [b, past] of its slots.

    ``DynamicCache`` stores keys and values only; which cached slots were padding is the caller's to
    remember (``generate()`` keeps ``model_kwargs["attention_mask"]`` for the same reason).
    """

    kv: Any
    batch: int
    mask: Tensor | None = None

    def extend_mask(self, chunk_mask: Tensor) -> Tensor:
        """The mask over past + chunk (1 = real token), remembered for the next step."""
        past = self.mask if self.mask is not None else chunk_mask[:, :0]
        self.mask = torch.cat([past, chunk_mask], dim=1)
        return self.mask


class GPT2Handle:
    """``logits`` / ``new_cache`` / ``step`` over a ``GPT2LMHeadModel`` (see module doc for positions)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def _run(self, ids: Tensor, **kwargs: Any) -> Tensor:
        with torch.no_grad():
            out = self.model(input_ids=ids, **kwargs)
        logits: Tensor = out.logits
        return logits

    def cache_kwargs(self, cache: GPT2Cache) -> dict[str, Any]:
        """The cache argument under the name this transformers supports: ``cache`` (5.x, where
        ``past_key_values`` is deprecated, its removal announced for 5.40) or ``past_key_values``
        (releases before the rename)."""
        params = inspect.signature(self.model.forward).parameters
        return {"cache" if "cache" in params else "past_key_values": cache.kv}

    def positions(self, ids: Tensor, offset: int) -> Tensor:
        """``position_ids`` [b, l]: absolute slots ``offset .. offset + l - 1`` for every sample."""
        slots = torch.arange(offset, offset + ids.shape[1], device=ids.device)
        return slots.unsqueeze(0).expand(ids.shape[0], -1)

    def logits(self, ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """Teacher-forced logits [b, l, vocab]; ``pad_mask`` (True = real token) is the attention mask.

        Claims: mask.padding.invariance, mask.causal.future-blind, output.projection.
        """
        mask = None if pad_mask is None else pad_mask.to(torch.long)
        return self._run(ids, attention_mask=mask, position_ids=self.positions(ids, 0), use_cache=False)

    def new_cache(self, batch: int) -> GPT2Cache:
        """An empty ``DynamicCache``."""
        transformers = _transformers()
        config = getattr(self.model, "config", None)
        return GPT2Cache(transformers.DynamicCache(config=config), batch)

    def step(self, ids_chunk: Tensor, cache: GPT2Cache, pad_mask_chunk: Tensor | None = None) -> Tensor:
        """Logits of ``c >= 1`` new tokens on ``cache`` (passed as ``cache=``, updated in place).

        ``pad_mask_chunk`` (True = real token; None = all real) is appended to the mask the cache
        remembers, and the whole ``attention_mask`` [b, past + c] is passed, as ``generate()`` does;
        positions stay absolute slots ``past .. past + c - 1``.
        Claims: kvcache.equals-recompute, kvcache.chunked-prefill, decoding.autoregressive,
        mask.padding.invariance.
        """
        past = int(cache.kv.get_seq_length())
        b, c = ids_chunk.shape
        chunk_mask = (
            torch.ones(b, c, dtype=torch.long, device=ids_chunk.device)
            if pad_mask_chunk is None
            else pad_mask_chunk.to(torch.long)
        )
        mask = cache.extend_mask(chunk_mask)
        return self._run(
            ids_chunk,
            **self.cache_kwargs(cache),
            attention_mask=mask,
            position_ids=self.positions(ids_chunk, past),
            use_cache=True,
        )


class HFGPT2Adapter(Adapter):
    """``transformers.GPT2LMHeadModel`` as a decoder-only LM, and transformers' temperature sampler."""

    name = "hf-gpt2"
    capabilities = frozenset({Capability.DECODER_LM, Capability.SAMPLER, Capability.LOSS})
    conventions = Conventions(
        norm_placement="pre",
        loads_weights=True,
        temperature_zero="error",
        dtypes=(torch.float32, torch.float64),
    )
    handle_class: type[GPT2Handle] = GPT2Handle

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> GPT2Handle:
        """``GPT2LMHeadModel`` of the config's sizes behind ``GPT2Handle`` (canonical weights mapped in)."""
        return self.handle_class(build_gpt2(config, state, device, dtype))

    def sample(self, logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
        """``TemperatureLogitsWarper``, then softmax and ``torch.multinomial`` as in ``generate()``.

        Claims: sampling.temperature-frequencies, sampling.invalid-temperature.
        """
        transformers = _transformers()
        warper = transformers.TemperatureLogitsWarper(float(temperature))
        no_ids = torch.zeros(logits.shape[0], 0, dtype=torch.long, device=logits.device)
        scores: Tensor = warper(no_ids, logits)
        probs = torch.softmax(scores, dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)

    def next_token_loss(self, logits: Tensor, ids: Tensor, pad_id: int | None) -> Tensor:
        """transformers' causal-LM loss (``ForCausalLMLoss``, what ``GPT2LMHeadModel(labels=...)`` runs).

        ``labels = ids`` with every ``pad_id`` replaced by ``-100`` (its ``ignore_index``), as the
        documentation asks; the shift and the ignoring are transformers' own.
        Claims: loss.shifted-cross-entropy, loss.ignores-padding.
        """
        labels = ids if pad_id is None else ids.masked_fill(ids == pad_id, IGNORE_INDEX)
        return causal_lm_loss(logits, labels)


#: transformers' (and ``cross_entropy``'s) default label to ignore.
IGNORE_INDEX = -100


def causal_lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """``LOSS_MAPPING["ForCausalLM"]`` -- the ``loss_function`` of ``GPT2LMHeadModel`` -- on labels [b, l]."""
    from transformers.loss.loss_utils import LOSS_MAPPING

    _transformers()
    loss_function: Any = LOSS_MAPPING["ForCausalLM"]
    loss: Tensor = loss_function(logits, labels, vocab_size=logits.shape[-1])
    return loss


def make() -> HFGPT2Adapter:
    """Factory for ``--impl hf-gpt2``; a clear usage error when ``transformers`` is not installed."""
    if importlib.util.find_spec("transformers") is None:
        raise TargetError(f"target 'hf-gpt2' needs {REQUIREMENT!r}: pip install '{REQUIREMENT}'")
    return HFGPT2Adapter()
