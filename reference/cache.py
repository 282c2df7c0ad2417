"""Key/value caches for incremental decoding.

Tensors are kept as ``[batch, heads, time, d_head]``. Only keys and values of past positions are
stored: past queries are never needed again, because each step only computes the new positions' rows.
"""

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from transformer_conformance.reference.checking import (
    checked,
    require,
    require_same_device,
    require_same_dtype,
)


@dataclass
class LayerKVCache:
    """The keys and values seen so far by one self-attention layer (``None`` before the first step).

    Claims: kvcache.only-kv, kvcache.equals-recompute, kvcache.chunked-prefill.
    """

    k: Tensor | None = None
    v: Tensor | None = None

    @property
    def length(self) -> int:
        """Number of cached positions (``t``)."""
        return 0 if self.k is None else int(self.k.shape[2])

    @checked
    def append(
        self,
        k_new: Float[Tensor, "batch heads new d_head"],
        v_new: Float[Tensor, "batch heads new d_v"],
    ) -> tuple[Float[Tensor, "batch heads total d_head"], Float[Tensor, "batch heads total d_v"]]:
        """Append ``new`` positions along the time axis and return all cached ``(k, v)``.

        Claims: kvcache.only-kv, kvcache.chunked-prefill.
        """
        require_same_device(k_new=k_new, v_new=v_new, cached_k=self.k)
        require_same_dtype(k_new=k_new, v_new=v_new, cached_k=self.k)
        if self.k is None or self.v is None:
            self.k, self.v = k_new, v_new
        else:
            expected = (self.k.shape[0], self.k.shape[1], self.k.shape[3])
            actual = (k_new.shape[0], k_new.shape[1], k_new.shape[3])
            require(
                expected == actual,
                "k_new",
                f"[batch, heads, d_head] = {list(expected)} as cached",
                list(actual),
            )
            require(
                v_new.shape[-1] == self.v.shape[-1],
                "v_new",
                f"d_v = {self.v.shape[-1]} as cached",
                v_new.shape[-1],
            )
            self.k = torch.cat([self.k, k_new], dim=2)
            self.v = torch.cat([self.v, v_new], dim=2)
        return self.k, self.v


@dataclass
class KVCache:
    """Cache of a whole decoder: one ``LayerKVCache`` per self-attention layer, cross-attention K/V per layer
    (computed once from the memory, ``None`` until then), and the number of positions already decoded.

    Claims: kvcache.equals-recompute, kvcache.cross-computed-once, kvcache.only-kv.
    """

    self_attn: list[LayerKVCache] = field(default_factory=list)
    cross_attn: list[tuple[Tensor, Tensor] | None] = field(default_factory=list)
    position: int = 0
    memory: Tensor | None = None  # the memory the cross K/V were computed from (one source per cache)

    @classmethod
    def empty(cls, num_layers: int) -> "KVCache":
        """A fresh cache for ``num_layers`` layers at position 0."""
        return cls(
            self_attn=[LayerKVCache() for _ in range(num_layers)],
            cross_attn=[None for _ in range(num_layers)],
            position=0,
        )
