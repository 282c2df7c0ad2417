"""Weight name tables: move a state dict between another model's names and a ``VariantLM``'s names.

A table is data: rules ``(source name, target names, transform)``, where ``{i}`` stands for the layer
index, and the source names to ignore. Only tensors are involved (no import of the other library), so
the same table serves tests, conformance adapters and users. Transforms:

- ``copy``: one tensor to one tensor;
- ``qkv_per_head``: a fused ``[heads * 3 * d_head, ...]`` query/key/value projection laid out head by
  head (GPT-NeoX's ``query_key_value``: for head ``h`` rows ``q, k, v`` of ``d_head`` each) to the
  three separate projections; ``from_reference`` joins them back;
- ``qkv_concat``: a fused projection that is ``cat(q, k, v)`` along its first axis (a fused ``Linear``
  weight or bias), split into three equal parts;
- ``transpose``: one ``[in, out]`` matrix (GPT-2's ``Conv1D``) to the reference's ``[out, in]``;
- ``qkv_concat_transposed``: GPT-2's ``c_attn`` weight ``cat(q, k, v).T`` of shape ``[in, 3 * out]``.

``to_reference`` fails on a missing source tensor and on any source tensor no rule consumes, so a
table that forgets a weight is an error, never a silently random parameter.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from transformer_conformance.reference.checking import ReferenceInputError, require

TRANSFORMS: tuple[str, ...] = ("copy", "qkv_per_head", "qkv_concat", "transpose", "qkv_concat_transposed")


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


def _split(tensor: Tensor, transform: str, num_heads: int) -> tuple[Tensor, ...]:
    """Source tensor -> reference tensors under ``transform``."""
    if transform == "copy":
        return (tensor,)
    if transform == "transpose":
        return (tensor.T.contiguous(),)
    if transform == "qkv_per_head":
        return _split_qkv(tensor, num_heads)
    fused = tensor.T if transform == "qkv_concat_transposed" else tensor
    require(fused.shape[0] % 3 == 0, "fused qkv", "a first axis divisible by 3", fused.shape[0])
    return tuple(part.contiguous() for part in fused.chunk(3, dim=0))


def _join(parts: tuple[Tensor, ...], transform: str, num_heads: int) -> Tensor:
    """Reference tensors -> the source tensor under ``transform`` (the inverse of ``_split``)."""
    if transform == "copy":
        return parts[0]
    if transform == "transpose":
        return parts[0].T.contiguous()
    if transform == "qkv_per_head":
        return _join_qkv(parts, num_heads)
    fused = torch.cat(parts, dim=0)
    return fused.T.contiguous() if transform == "qkv_concat_transposed" else fused


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
        out.update(zip(targets, _split(tensor, transform, num_heads)))
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
        out[source] = _join(tuple(state[t] for t in targets), transform, num_heads)
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

#: Qwen2: Llama's names and layout plus biases on the query, key and value projections (none on the output).
HF_QWEN2 = NameTable(
    name="Hugging Face Qwen2",
    rules=(
        *HF_LLAMA.rules,
        *(
            (f"model.layers.{{i}}.self_attn.{p}_proj.bias", (f"layers.{{i}}.attn.w_{p}.bias",), "copy")
            for p in "qkv"
        ),
    ),
    ignore=HF_LLAMA.ignore,
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


HF_GPT2 = NameTable(
    name="Hugging Face GPT-2",
    rules=(
        ("transformer.wte.weight", ("embed.weight",), "copy"),
        ("transformer.wpe.weight", ("pos_embed.weight",), "copy"),
        (
            "transformer.h.{i}.attn.c_attn.weight",
            tuple(f"layers.{{i}}.attn.w_{p}.weight" for p in "qkv"),
            "qkv_concat_transposed",
        ),
        (
            "transformer.h.{i}.attn.c_attn.bias",
            tuple(f"layers.{{i}}.attn.w_{p}.bias" for p in "qkv"),
            "qkv_concat",
        ),
        *(
            (f"transformer.h.{{i}}.{hf}.weight", (f"layers.{{i}}.{ref}.weight",), "transpose")
            for hf, ref in (
                ("attn.c_proj", "attn.w_o"),
                ("mlp.c_fc", "ffn.w_up"),
                ("mlp.c_proj", "ffn.w_down"),
            )
        ),
        *(
            (f"transformer.h.{{i}}.{hf}.{w}", (f"layers.{{i}}.{ref}.{w}",), "copy")
            for hf, ref, ws in (
                ("attn.c_proj", "attn.w_o", ("bias",)),
                ("mlp.c_fc", "ffn.w_up", ("bias",)),
                ("mlp.c_proj", "ffn.w_down", ("bias",)),
                ("ln_1", "norm_1", ("weight", "bias")),
                ("ln_2", "norm_2", ("weight", "bias")),
            )
            for w in ws
        ),
        ("transformer.ln_f.weight", ("final_norm.weight",), "copy"),
        ("transformer.ln_f.bias", ("final_norm.bias",), "copy"),
        ("lm_head.weight", ("lm_head.weight",), "copy"),
    ),
    ignore=("attn.bias", "attn.masked_bias"),
)


def _linears(
    source: str, target: str, pairs: tuple[tuple[str, str], ...], bias: bool = True
) -> tuple[tuple[str, tuple[str, ...], str], ...]:
    """``copy`` rules ``{source}.{a}.{w} -> {target}.{b}.{w}`` for each pair, weights (and biases)."""
    kinds = ("weight", "bias") if bias else ("weight",)
    return tuple((f"{source}.{a}.{w}", (f"{target}.{b}.{w}",), "copy") for a, b in pairs for w in kinds)


#: transformers' ``BertModel`` (no pooler) -> ``reference.variant_encdec.VariantEncoder``. The token-type
#: table has no reference counterpart: an adapter feeding type 0 everywhere sets that row to zeros.
HF_BERT = NameTable(
    name="Hugging Face BERT",
    rules=(
        ("embeddings.word_embeddings.weight", ("embed.weight",), "copy"),
        ("embeddings.position_embeddings.weight", ("encoder.pos_embed.weight",), "copy"),
        *_linears("embeddings", "encoder", (("LayerNorm", "embed_norm"),)),
        *_linears(
            "encoder.layer.{i}",
            "encoder.layers.{i}",
            (
                ("attention.self.query", "attn.w_q"),
                ("attention.self.key", "attn.w_k"),
                ("attention.self.value", "attn.w_v"),
                ("attention.output.dense", "attn.w_o"),
                ("attention.output.LayerNorm", "norm_1"),
                ("intermediate.dense", "ffn.w_up"),
                ("output.dense", "ffn.w_down"),
                ("output.LayerNorm", "norm_2"),
            ),
        ),
    ),
    ignore=("token_type_embeddings.weight", "position_ids", "token_type_ids"),
)

_BART_ATTN = (("q_proj", "w_q"), ("k_proj", "w_k"), ("v_proj", "w_v"), ("out_proj", "w_o"))

#: transformers' ``BartForConditionalGeneration`` -> ``reference.variant_encdec.VariantEncoderDecoder``
#: (shared embeddings, learned positions with BART's offset of 2, ``layernorm_embedding``, post-LN).
#: ``final_logits_bias`` is a zero buffer (no reference counterpart).
HF_BART = NameTable(
    name="Hugging Face BART",
    rules=(
        ("model.shared.weight", ("embed.weight",), "copy"),
        *(
            rule
            for stack in ("encoder", "decoder")
            for rule in (
                (f"model.{stack}.embed_tokens.weight", ("embed.weight",), "copy"),
                (f"model.{stack}.embed_positions.weight", (f"{stack}.pos_embed.weight",), "copy"),
                *_linears(f"model.{stack}", stack, (("layernorm_embedding", "embed_norm"),)),
                *_linears(
                    f"model.{stack}.layers.{{i}}",
                    f"{stack}.layers.{{i}}",
                    (
                        *((f"self_attn.{a}", f"attn.{b}") for a, b in _BART_ATTN),
                        ("self_attn_layer_norm", "norm_1"),
                        ("fc1", "ffn.w_up"),
                        ("fc2", "ffn.w_down"),
                        ("final_layer_norm", "norm_2"),
                    ),
                ),
            )
        ),
        *_linears(
            "model.decoder.layers.{i}",
            "decoder.layers.{i}",
            (
                *((f"encoder_attn.{a}", f"cross_attn.{b}") for a, b in _BART_ATTN),
                ("encoder_attn_layer_norm", "cross_norm"),
            ),
        ),
        ("lm_head.weight", ("lm_head.weight",), "copy"),
    ),
    ignore=("final_logits_bias",),
)

_T5_ATTN = (("q", "w_q"), ("k", "w_k"), ("v", "w_v"), ("o", "w_o"))

#: transformers' ``T5ForConditionalGeneration`` -> ``reference.variant_encdec.VariantEncoderDecoder``
#: (shared embeddings, one bucket table per stack in its first block, RMSNorm without bias, no biases).
HF_T5 = NameTable(
    name="Hugging Face T5",
    rules=(
        ("shared.weight", ("embed.weight",), "copy"),
        *(
            rule
            for stack in ("encoder", "decoder")
            for rule in (
                (f"{stack}.embed_tokens.weight", ("embed.weight",), "copy"),
                (
                    f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                    (f"{stack}.relative_bias.weight",),
                    "copy",
                ),
                *_linears(
                    f"{stack}.block.{{i}}.layer.0",
                    f"{stack}.layers.{{i}}",
                    (*((f"SelfAttention.{a}", f"attn.{b}") for a, b in _T5_ATTN), ("layer_norm", "norm_1")),
                    bias=False,
                ),
                *_linears(
                    f"{stack}.block.{{i}}.layer.{1 if stack == 'encoder' else 2}",
                    f"{stack}.layers.{{i}}",
                    (
                        ("DenseReluDense.wi", "ffn.w_up"),
                        ("DenseReluDense.wo", "ffn.w_down"),
                        ("layer_norm", "norm_2"),
                    ),
                    bias=False,
                ),
                (f"{stack}.final_layer_norm.weight", (f"{stack}.final_norm.weight",), "copy"),
            )
        ),
        *_linears(
            "decoder.block.{i}.layer.1",
            "decoder.layers.{i}",
            (
                *((f"EncDecAttention.{a}", f"cross_attn.{b}") for a, b in _T5_ATTN),
                ("layer_norm", "cross_norm"),
            ),
            bias=False,
        ),
        ("lm_head.weight", ("lm_head.weight",), "copy"),
    ),
)
