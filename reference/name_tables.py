"""Weight name tables: move a state dict between another model's names and a ``VariantLM``'s names.

A table is data: rules ``(source name, target names, transform)``, where ``{i}`` stands for the layer
index, and the source names to ignore. Only tensors are involved (no import of the other library), so
the same table serves tests, conformance adapters and users. Transforms:

- ``copy``: one tensor to one tensor;
- ``qkv_per_head``: a fused ``[heads * 3 * d_head, ...]`` query/key/value projection laid out head by
  head (GPT-NeoX's ``query_key_value``: for head ``h`` rows ``q, k, v`` of ``d_head`` each) to the
  three separate projections; ``from_reference`` joins them back.

``to_reference`` fails on a missing source tensor and on any source tensor no rule consumes, so a
table that forgets a weight is an error, never a silently random parameter.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from transformer_conformance.reference.checking import ReferenceInputError, require

TRANSFORMS: tuple[str, ...] = ("copy", "qkv_per_head")


@dataclass(frozen=True)
class NameTable:
    """Rules from a source naming to the reference's, and source names that carry no weight.

    Claims: lm.llama-equals-hf, lm.neox-equals-hf.
    """

    name: str
    rules: tuple[tuple[str, tuple[str, ...], str], ...]
    ignore: tuple[str, ...] = ()


def _expand(table: NameTable, num_layers: int) -> list[tuple[str, tuple[str, ...], str]]:
    out = []
    for source, targets, transform in table.rules:
        require(
            transform in TRANSFORMS,
            f"{table.name} rule {source!r}",
            f"a transform in {TRANSFORMS}",
            transform,
        )
        for i in range(num_layers) if "{i}" in source else [-1]:
            index = str(i)
            out.append(
                (source.replace("{i}", index), tuple(t.replace("{i}", index) for t in targets), transform)
            )
    return out


def _split_qkv(fused: Tensor, num_heads: int) -> tuple[Tensor, ...]:
    rows = fused.shape[0]
    require(
        rows % (3 * num_heads) == 0, "fused qkv", f"rows divisible by 3 * num_heads = {3 * num_heads}", rows
    )
    per_head = fused.reshape(num_heads, 3, rows // (3 * num_heads), *fused.shape[1:])
    return tuple(per_head[:, j].reshape(rows // 3, *fused.shape[1:]) for j in range(3))


def _join_qkv(parts: tuple[Tensor, ...], num_heads: int) -> Tensor:
    q = parts[0]
    stacked = torch.stack([p.reshape(num_heads, q.shape[0] // num_heads, *q.shape[1:]) for p in parts], dim=1)
    return stacked.reshape(3 * q.shape[0], *q.shape[1:])


def to_reference(
    state: Mapping[str, Tensor], table: NameTable, *, num_layers: int, num_heads: int
) -> dict[str, Tensor]:
    """The reference-named state dict built from ``state`` (source names) by ``table``.

    Claims: lm.llama-equals-hf, lm.neox-equals-hf.
    """
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    for source, targets, transform in _expand(table, num_layers):
        if source not in state:
            raise ReferenceInputError(
                f"argument 'state': expected tensor {source!r} ({table.name} table), got none"
            )
        used.add(source)
        tensor = state[source]
        parts = (tensor,) if transform == "copy" else _split_qkv(tensor, num_heads)
        out.update(zip(targets, parts))
    unused = sorted(k for k in state if k not in used and not any(k.endswith(s) for s in table.ignore))
    if unused:
        raise ReferenceInputError(
            f"argument 'state': expected only tensors the {table.name} table maps, got {unused}"
        )
    return out


def from_reference(
    state: Mapping[str, Tensor], table: NameTable, *, num_layers: int, num_heads: int
) -> dict[str, Tensor]:
    """The inverse of ``to_reference``: source-named tensors from a reference state dict.

    Claims: lm.llama-equals-hf, lm.neox-equals-hf.
    """
    out: dict[str, Tensor] = {}
    for source, targets, transform in _expand(table, num_layers):
        missing = [t for t in targets if t not in state]
        if missing:
            raise ReferenceInputError(f"argument 'state': expected reference tensors {missing}, got none")
        parts = tuple(state[t] for t in targets)
        out[source] = parts[0] if transform == "copy" else _join_qkv(parts, num_heads)
    return out


_ATTN = ("q", "k", "v", "o")

HF_LLAMA = NameTable(
    name="Hugging Face Llama/Mistral",
    rules=(
        ("model.embed_tokens.weight", ("embed.weight",), "copy"),
        *(
            (f"model.layers.{{i}}.self_attn.{p}_proj.weight", (f"layers.{{i}}.attn.w_{p}.weight",), "copy")
            for p in _ATTN
        ),
        *(
            (f"model.layers.{{i}}.mlp.{p}_proj.weight", (f"layers.{{i}}.ffn.w_{p}.weight",), "copy")
            for p in ("gate", "up", "down")
        ),
        ("model.layers.{i}.input_layernorm.weight", ("layers.{i}.norm_1.weight",), "copy"),
        ("model.layers.{i}.post_attention_layernorm.weight", ("layers.{i}.norm_2.weight",), "copy"),
        ("model.norm.weight", ("final_norm.weight",), "copy"),
        ("lm_head.weight", ("lm_head.weight",), "copy"),
    ),
    ignore=("rotary_emb.inv_freq",),
)

HF_GPT_NEOX = NameTable(
    name="Hugging Face GPT-NeoX",
    rules=(
        ("gpt_neox.embed_in.weight", ("embed.weight",), "copy"),
        *(
            (
                f"gpt_neox.layers.{{i}}.attention.query_key_value.{w}",
                tuple(f"layers.{{i}}.attn.w_{p}.{w}" for p in "qkv"),
                "qkv_per_head",
            )
            for w in ("weight", "bias")
        ),
        *(
            (f"gpt_neox.layers.{{i}}.{hf}.{w}", (f"layers.{{i}}.{ref}.{w}",), "copy")
            for hf, ref in (
                ("attention.dense", "attn.w_o"),
                ("mlp.dense_h_to_4h", "ffn.w_up"),
                ("mlp.dense_4h_to_h", "ffn.w_down"),
                ("input_layernorm", "norm_1"),
                ("post_attention_layernorm", "norm_2"),
            )
            for w in ("weight", "bias")
        ),
        ("gpt_neox.final_layer_norm.weight", ("final_norm.weight",), "copy"),
        ("gpt_neox.final_layer_norm.bias", ("final_norm.bias",), "copy"),
        ("lm_head.weight", ("lm_head.weight",), "copy"),
    ),
    ignore=("rotary_emb.inv_freq", "attention.bias", "attention.masked_bias"),
)

NOTES_DECODER_ONLY = NameTable(
    name="reference DecoderOnlyLM",
    rules=(
        ("embed.weight", ("embed.weight",), "copy"),
        ("pos_embed.weight", ("pos_embed.weight",), "copy"),
        *(
            (f"decoder.layers.{{i}}.{src}.{w}", (f"layers.{{i}}.{dst}.{w}",), "copy")
            for src, dst in (
                ("self_attn.w_q", "attn.w_q"),
                ("self_attn.w_k", "attn.w_k"),
                ("self_attn.w_v", "attn.w_v"),
                ("self_attn.w_o", "attn.w_o"),
                ("ffn.w_1", "ffn.w_up"),
                ("ffn.w_2", "ffn.w_down"),
                ("norm_1", "norm_1"),
                ("norm_2", "norm_2"),
            )
            for w in ("weight", "bias")
        ),
        ("decoder.final_norm.weight", ("final_norm.weight",), "copy"),
        ("decoder.final_norm.bias", ("final_norm.bias",), "copy"),
        ("lm_head.weight", ("lm_head.weight",), "copy"),
    ),
)


def present_rules(table: NameTable, state: Mapping[str, Tensor]) -> NameTable:
    """``table`` restricted to the rules whose source tensors exist in ``state`` (layer 0 for layer rules).

    For tables whose optional parts (learned positions, a final norm) depend on the configuration.
    Claims: arch.notes-default.
    """
    kept = tuple(rule for rule in table.rules if rule[0].replace("{i}", "0") in state)
    return NameTable(table.name, kept, table.ignore)
