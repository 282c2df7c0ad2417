"""Example: audit your own Llama-like model, differential checks included.

``MyLlama`` stands for your model: rotary positions (half-split pairs, theta 10000), RMSNorm, a SwiGLU
feed-forward, grouped-query attention (2 KV heads shared by contiguous groups of query heads), no
biases, pre-norm blocks with a final norm, its own parameter names, no KV cache. The adapter:

1. declares that architecture (``architecture = Architecture(...)``): the checks then build the
   reference ``VariantLM`` of it as the oracle instead of the notes' Transformer;
2. maps the oracle's canonical weights onto its own names with a name table -- data, not code
   (``reference.name_tables``: one rule per tensor, ``{i}`` for the layer index);
3. exposes ``step`` by recomputing the prefix, which the cache checks compare against.

Run it:  python -m transformer_conformance run --profile quick \
             --impl transformer_conformance.examples.my_llama:make
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.name_tables import NameTable, from_reference


def rotate(x: Tensor, theta: float = 10000.0) -> Tensor:
    """RoPE on [b, h, n, d] at positions 0..n-1, half-split pairs (d/2 apart)."""
    n, d = x.shape[-2], x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d)
    angles = torch.arange(n, dtype=torch.float64, device=x.device)[:, None] * freqs
    cos, sin = torch.cat([angles.cos()] * 2, -1).to(x.dtype), torch.cat([angles.sin()] * 2, -1).to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float) -> None:
        super().__init__()
        self.gain, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.gain * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return out


class Block(nn.Module):
    """x + attn(norm(x)), then x + swiglu(norm(x)); ``kv`` KV heads for ``heads`` query heads."""

    def __init__(self, d: int, heads: int, kv: int, d_ff: int, eps: float) -> None:
        super().__init__()
        self.heads, self.kv, self.dh = heads, kv, d // heads
        self.attn_norm, self.mlp_norm = RMSNorm(d, eps), RMSNorm(d, eps)
        self.wq, self.wk = nn.Linear(d, d, bias=False), nn.Linear(d, kv * self.dh, bias=False)
        self.wv, self.wo = nn.Linear(d, kv * self.dh, bias=False), nn.Linear(d, d, bias=False)
        self.gate, self.up = nn.Linear(d, d_ff, bias=False), nn.Linear(d, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d, bias=False)

    def forward(self, x: Tensor, visible: Tensor) -> Tensor:
        b, n, d = x.shape
        h = self.attn_norm(x)
        q = rotate(self.wq(h).view(b, n, self.heads, self.dh).transpose(1, 2))
        k = rotate(self.wk(h).view(b, n, self.kv, self.dh).transpose(1, 2))
        v = self.wv(h).view(b, n, self.kv, self.dh).transpose(1, 2)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=visible, enable_gqa=True)
        x = x + self.wo(att.nan_to_num(0.0).transpose(1, 2).reshape(b, n, d))
        h = self.mlp_norm(x)
        out: Tensor = x + self.down(F.silu(self.gate(h)) * self.up(h))
        return out


class MyLlama(nn.Module):
    """Your model: embeddings, rotary pre-norm blocks, a final RMSNorm and an untied head."""

    def __init__(self, vocab: int, d: int, heads: int, kv: int, d_ff: int, layers: int, eps: float) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, heads, kv, d_ff, eps) for _ in range(layers))
        self.norm, self.output = RMSNorm(d, eps), nn.Linear(d, vocab, bias=False)

    def forward(self, ids: Tensor, real: Tensor | None = None) -> Tensor:
        """Logits [b, l, vocab]; ``real`` [b, l] (True = real token) hides padding keys."""
        n = ids.shape[1]
        visible = torch.ones(n, n, dtype=torch.bool, device=ids.device).tril()[None, None]
        if real is not None:
            visible = visible & real[:, None, None, :]
        x = self.tokens(ids)
        for block in self.blocks:
            x = block(x, visible)
        out: Tensor = self.output(self.norm(x))
        return out


#: Your names (left) <- the reference VariantLM's canonical names (right): one rule per tensor.
MY_NAMES = NameTable(
    name="MyLlama",
    rules=(
        ("tokens.weight", ("embed.weight",), "copy"),
        *(
            (f"blocks.{{i}}.{mine}.weight", (f"layers.{{i}}.{ref}.weight",), "copy")
            for mine, ref in (
                ("wq", "attn.w_q"),
                ("wk", "attn.w_k"),
                ("wv", "attn.w_v"),
                ("wo", "attn.w_o"),
                ("gate", "ffn.w_gate"),
                ("up", "ffn.w_up"),
                ("down", "ffn.w_down"),
            )
        ),
        ("blocks.{i}.attn_norm.gain", ("layers.{i}.norm_1.weight",), "copy"),
        ("blocks.{i}.mlp_norm.gain", ("layers.{i}.norm_2.weight",), "copy"),
        ("norm.gain", ("final_norm.weight",), "copy"),
        ("output.weight", ("lm_head.weight",), "copy"),
    ),
)


class Handle:
    """logits / new_cache / step; the "cache" is the token history (step recomputes)."""

    def __init__(self, model: MyLlama) -> None:
        self.model = model

    def logits(self, ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            out: Tensor = self.model(ids, pad_mask)
        return out

    def new_cache(self, batch: int) -> dict[str, Any]:
        return {"ids": None, "real": None}

    def step(self, ids_chunk: Tensor, cache: dict[str, Any], pad_mask_chunk: Tensor | None = None) -> Tensor:
        real = torch.ones_like(ids_chunk, dtype=torch.bool) if pad_mask_chunk is None else pad_mask_chunk
        for key, new in (("ids", ids_chunk), ("real", real)):
            cache[key] = new if cache[key] is None else torch.cat([cache[key], new], dim=1)
        return self.logits(cache["ids"], cache["real"])[:, -ids_chunk.shape[1] :]


class MyLlamaAdapter(Adapter):
    """Declares what MyLlama is; the checks do the rest."""

    name = "my-llama"
    capabilities = frozenset({Capability.DECODER_LM})
    conventions = Conventions(norm_placement="pre", layer_norm_eps=1e-6, dtypes=(torch.float32,))
    architecture = Architecture(
        positions="rotary",
        rope_layout="half",
        norm="rmsnorm",
        activation="silu",
        gated=True,
        ffn_bias=False,
        num_kv_heads=2,
        qkv_bias=False,
        out_bias=False,
    )

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> Handle:
        kv = config.arch.kv_heads(config.num_heads)
        model = MyLlama(
            config.vocab_size,
            config.d_model,
            config.num_heads,
            kv,
            config.d_ff,
            config.num_layers,
            config.eps,
        )
        if state is not None:
            model.load_state_dict(
                from_reference(state, MY_NAMES, num_layers=config.num_layers, num_heads=config.num_heads)
            )
        return Handle(model.to(device=device, dtype=dtype).eval())


def make() -> MyLlamaAdapter:
    """Factory for ``--impl transformer_conformance.examples.my_llama:make``."""
    return MyLlamaAdapter()
