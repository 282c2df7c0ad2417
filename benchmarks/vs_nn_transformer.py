"""Reference encoder-decoder stacks against ``torch.nn.Transformer`` carrying the same weights.

Claims: encdec.teacher-forcing, residual.post-ln, mha.fused-equals-per-head (the fused in_proj layout).

``torch.nn.Transformer`` is the encoder and decoder stacks (no embeddings, positions or output head), so
the comparison is on those: the reference's ``EncoderDecoder.encoder`` / ``.decoder`` against an
``nn.Transformer`` built with the same sizes (post-LN, ReLU, dropout 0, batch_first, no final norms for
post-LN) into which the reference's canonical ``state_dict`` is copied: ``in_proj_weight =
cat(w_q, w_k, w_v)``, ``out_proj = w_o``, ``linear1/2 = ffn.w_1/2``, ``norm1/2/3 = norm_1/2/3``,
``multihead_attn = cross_attn`` (loaded with ``strict=True``, so every parameter is covered). Both
get the same float32 source and target activations and a causal target mask; eval mode, no grad, so
torch may take its fused inference fast path. Figures: median time ratio reference / torch over
interleaved rounds, the max absolute difference of the outputs and whether torch's output passes the
project's differential tolerance against a float64 run of the reference.
"""

import torch
from torch import Tensor, nn

from benchmarks._timing import Row, Settings, interleaved, median

NAME = "vs-nn-transformer"


def _attention_params(prefix: str, state: dict[str, Tensor], out: str) -> dict[str, Tensor]:
    """Canonical ``w_q/w_k/w_v/w_o`` of one reference attention block -> ``nn.MultiheadAttention`` names."""
    mapped = {
        f"{out}.in_proj_weight": torch.cat([state[f"{prefix}.w_{p}.weight"] for p in "qkv"]),
        f"{out}.out_proj.weight": state[f"{prefix}.w_o.weight"],
    }
    if f"{prefix}.w_q.bias" in state:
        mapped[f"{out}.in_proj_bias"] = torch.cat([state[f"{prefix}.w_{p}.bias"] for p in "qkv"])
        mapped[f"{out}.out_proj.bias"] = state[f"{prefix}.w_o.bias"]
    return mapped


def torch_state_dict(reference_state: dict[str, Tensor], num_layers: int) -> dict[str, Tensor]:
    """Map the reference ``EncoderDecoder`` state (encoder.* / decoder.*) to ``nn.Transformer`` names.

    Claims: mha.fused-equals-per-head.
    """
    s = reference_state
    out: dict[str, Tensor] = {}
    renames = {"ffn.w_1": "linear1", "ffn.w_2": "linear2",
               "norm_1": "norm1", "norm_2": "norm2", "norm_3": "norm3"}
    for side, blocks in (("encoder", {"self_attn": "self_attn"}),
                         ("decoder", {"self_attn": "self_attn", "cross_attn": "multihead_attn"})):
        for i in range(num_layers):
            ref, tgt = f"{side}.layers.{i}", f"{side}.layers.{i}"
            for ref_block, torch_block in blocks.items():
                out.update(_attention_params(f"{ref}.{ref_block}", s, f"{tgt}.{torch_block}"))
            for ref_name, torch_name in renames.items():
                for leaf in ("weight", "bias"):
                    key = f"{ref}.{ref_name}.{leaf}"
                    if key in s:
                        out[f"{tgt}.{torch_name}.{leaf}"] = s[key]
        for leaf in ("weight", "bias"):
            if f"{side}.final_norm.{leaf}" in s:
                out[f"{side}.norm.{leaf}"] = s[f"{side}.final_norm.{leaf}"]
    return out


def build_torch_transformer(config: object, reference_state: dict[str, Tensor]) -> nn.Transformer:
    """An ``nn.Transformer`` of the config's sizes carrying the reference weights (strict load)."""
    from transformer_conformance.reference.config import TransformerConfig

    assert isinstance(config, TransformerConfig)
    pre = config.norm_placement == "pre"
    kwargs = {"dropout": 0.0, "activation": config.activation, "layer_norm_eps": config.eps,
              "batch_first": True, "norm_first": pre}
    d, h, ff, n = config.d_model, config.num_heads, config.d_ff, config.num_layers
    encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(d, h, ff, **kwargs),  # type: ignore[arg-type]
        n, norm=nn.LayerNorm(d, eps=config.eps) if pre else None, enable_nested_tensor=False,
    )
    decoder = nn.TransformerDecoder(
        nn.TransformerDecoderLayer(d, h, ff, **kwargs),  # type: ignore[arg-type]
        n, norm=nn.LayerNorm(d, eps=config.eps) if pre else None,
    )
    model = nn.Transformer(d, h, n, n, ff, custom_encoder=encoder, custom_decoder=decoder, **kwargs)  # type: ignore[arg-type]
    model.load_state_dict(torch_state_dict(reference_state, n), strict=True)
    return model


def run(settings: Settings) -> list[Row]:
    """Time ratio reference / nn.Transformer and the output difference, at one size."""
    from transformer_conformance.reference.config import TransformerConfig
    from transformer_conformance.reference.model import EncoderDecoder
    from transformer_conformance.reference.tolerance import differential, max_abs_error

    device = settings.device
    if settings.mode == "tiny":
        config, batch, src_len, tgt_len = TransformerConfig.tiny(), 2, 8, 8
    else:
        config = TransformerConfig(vocab_size=1000)
        batch, src_len, tgt_len = settings.pick((2, 128, 128), (2, 64, 64), None)
    rounds = settings.rounds(full=5, quick=3)
    torch.manual_seed(settings.seed)
    reference = EncoderDecoder(config).eval()
    theirs = build_torch_transformer(config, reference.state_dict()).eval().to(device)
    reference64 = EncoderDecoder(config).eval()
    reference64.load_state_dict(reference.state_dict())
    reference64 = reference64.to(device=device, dtype=torch.float64)
    reference = reference.to(device)
    src = torch.randn(batch, src_len, config.d_model, device=device)
    tgt = torch.randn(batch, tgt_len, config.d_model, device=device)
    causal = nn.Transformer.generate_square_subsequent_mask(tgt_len, device=device)

    def ref_call() -> Tensor:
        with torch.no_grad():
            memory: Tensor = reference.encoder(src)
            out: Tensor = reference.decoder(tgt, memory)
            return out

    def torch_call() -> Tensor:
        with torch.no_grad():
            out: Tensor = theirs(src, tgt, tgt_mask=causal, tgt_is_causal=True)
            return out

    times = interleaved({"reference": ref_call, "nn.Transformer": torch_call}, device, rounds)
    t_ref, t_torch = median(times["reference"]), median(times["nn.Transformer"])
    ours, other = ref_call(), torch_call()
    with torch.no_grad():
        oracle = reference64.decoder(tgt.double(), reference64.encoder(src.double()))
    verdict = differential(other, oracle, ours)
    diff = max_abs_error(ours, other)
    case = f"B={batch},S=T={src_len},d_model={config.d_model},L={config.num_layers}+{config.num_layers}"
    return [
        Row(NAME, case, "time ref/nn.Transformer", t_ref / t_torch, "x",
            note=f"ref {t_ref * 1e3:.1f} ms, torch {t_torch * 1e3:.1f} ms",
            extra={"ref_s": t_ref, "torch_s": t_torch}),
        Row(NAME, case, "max |ref - torch| output", diff, "", "differential tolerance", verdict.ok,
            f"torch vs float64 reference: {verdict.describe()}"),
    ]
