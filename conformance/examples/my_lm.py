"""Example: audit your own decoder-only language model.

``TinyGPT`` stands for your model: its own parameter names, learned positions, pre-LN blocks and
no KV cache. It cannot load the reference's canonical weights, so the adapter declares
``loads_weights=False``: the differential checks report "not-applicable" while every metamorphic
check (causality, padding invariance, batch independence, determinism, cache == recompute,
chunked prefill) still runs on its own random weights. A model without a cache exposes ``step``
by recomputing the whole prefix, which is exactly what the cache checks compare against.

Run it:  python -m transformer_conformance run --profile quick \
             --impl transformer_conformance.examples.my_lm:make
"""

import math
from typing import Any

import torch
from torch import Tensor, nn

from transformer_conformance.adapter import Adapter, Capability, Conventions


class Block(nn.Module):
    """Pre-LN block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d: int, heads: int, d_ff: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, d_ff), nn.ReLU(), nn.Linear(d_ff, d))

    def forward(self, x: Tensor, visible: Tensor) -> Tensor:
        """``visible`` [b, 1, l, l]: True where a query may attend to a key."""
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        weights = torch.softmax(scores.masked_fill(~visible, float("-inf")), -1).nan_to_num(0.0)
        terms = torch.where(visible.unsqueeze(-1), weights.unsqueeze(-1) * v.unsqueeze(-3), 0.0)
        x = x + self.proj(terms.sum(-2).transpose(1, 2).reshape(b, n, d))
        out: Tensor = x + self.mlp(self.ln2(x))
        return out


class TinyGPT(nn.Module):
    """Your model: token + learned position embeddings, pre-LN blocks, a final norm and a head."""

    def __init__(self, vocab: int, d: int, heads: int, d_ff: int, layers: int, max_len: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(Block(d, heads, d_ff) for _ in range(layers))
        self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

    def forward(self, ids: Tensor, real: Tensor | None = None) -> Tensor:
        """Logits [b, l, vocab]; ``real`` [b, l] (True = real token) hides padding keys."""
        n = ids.shape[1]
        visible = torch.ones(n, n, dtype=torch.bool, device=ids.device).tril()[None, None]
        if real is not None:
            visible = visible & real[:, None, None, :]
        x = self.tok(ids) + self.pos(torch.arange(n, device=ids.device))
        for block in self.blocks:
            x = block(x, visible)
        logits: Tensor = self.head(self.ln_f(x))
        return logits


class RecomputeCache:
    """The "cache" of a model without one: the ids seen so far and which of them are real tokens."""

    def __init__(self, batch: int, device: torch.device) -> None:
        self.ids = torch.zeros(batch, 0, dtype=torch.long, device=device)
        self.real = torch.zeros(batch, 0, dtype=torch.bool, device=device)


class TinyGPTHandle:
    """The handle the LM checks drive: logits / new_cache / step."""

    def __init__(self, model: TinyGPT) -> None:
        self.model = model

    def logits(self, ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """Teacher-forced logits for the whole sequence."""
        out: Tensor = self.model(ids, pad_mask)
        return out

    def new_cache(self, batch: int) -> RecomputeCache:
        """An empty cache."""
        return RecomputeCache(batch, next(self.model.parameters()).device)

    def step(self, ids_chunk: Tensor, cache: RecomputeCache, pad_mask_chunk: Tensor | None = None) -> Tensor:
        """Logits of the new chunk: recompute the prefix plus the chunk, keep the chunk's rows.

        ``pad_mask_chunk`` [b, chunk] (True = real token; None = all real) is remembered with the ids,
        so padding of an earlier chunk (e.g. a padded prompt) stays hidden in every later step."""
        if pad_mask_chunk is None:
            pad_mask_chunk = torch.ones_like(ids_chunk, dtype=torch.bool)
        cache.ids = torch.cat([cache.ids, ids_chunk], dim=1)
        cache.real = torch.cat([cache.real, pad_mask_chunk.to(torch.bool)], dim=1)
        out: Tensor = self.model(cache.ids, None if bool(cache.real.all()) else cache.real)
        return out[:, -ids_chunk.shape[1] :]


class TinyGPTAdapter(Adapter):
    """Capability.DECODER_LM for ``TinyGPT``; it cannot take the reference's weights."""

    name = "my-lm"
    capabilities = frozenset({Capability.DECODER_LM})
    conventions = Conventions(norm_placement="pre", loads_weights=False)

    def build_lm(
        self, config: Any, state: dict[str, Tensor] | None, device: torch.device, dtype: torch.dtype
    ) -> TinyGPTHandle:
        """Build a fresh seeded model of the configuration's sizes (``state`` is always None here)."""
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the global RNG
            torch.manual_seed(0)
            model = TinyGPT(
                config.vocab_size,
                config.d_model,
                config.num_heads,
                config.d_ff,
                config.num_layers,
                config.max_len,
            )
        return TinyGPTHandle(model.to(device=device, dtype=dtype).eval())


def make() -> Adapter:
    """Factory named on the command line: ``--impl transformer_conformance.examples.my_lm:make``."""
    return TinyGPTAdapter()
