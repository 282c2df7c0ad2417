"""A grouped-query multi-head attention of our own on torch SDPA (``enable_gqa=True``): ``torch-gqa``.

``GQAttention`` is what a user writes for a Llama-style layer: ``q_proj`` (``d_model -> d_model``),
``k_proj`` / ``v_proj`` (``d_model -> num_kv_heads * d_head``), ``o_proj``, and
``F.scaled_dot_product_attention(q, k, v, attn_mask, enable_gqa=True)``, which reads KV head
``h // g`` for query head ``h`` (the contiguous mapping). Canonical weights map as ``w_q -> q_proj``,
``w_k -> k_proj``, ``w_v -> v_proj``, ``w_o -> o_proj``. The target also exposes the attention function
itself (SDPA with ``enable_gqa=True`` on grouped K/V).

Declared (measured with torch 2.13 on the CPU): ``num_kv_heads = 2`` (contiguous) for both
capabilities; boolean masks True = may attend; ``is_causal=True`` aligned top-left; a fully masked row
gives a zero output (the math backend's safe softmax, pinned with ``sdpa_kernel``); no weights returned.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.targets.torch_sdpa import sdpa_mask_and_causal

#: Seed for layers built without a ``state``.
BUILD_SEED = 0
#: The KV head count this target declares (and builds).
NUM_KV_HEADS = 2


class GQAttention(nn.Module):
    """``num_heads`` query heads over ``num_kv_heads`` KV heads, attention by torch SDPA."""

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} is not a multiple of num_kv_heads={num_kv_heads}")
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.d_head = d_model // num_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, num_kv_heads * self.d_head)
        self.v_proj = nn.Linear(d_model, num_kv_heads * self.d_head)
        self.o_proj = nn.Linear(d_model, d_model)

    def forward(self, x_q: Tensor, x_kv: Tensor, keep: Tensor | None) -> Tensor:
        """``x_q`` [b, nq, d], ``x_kv`` [b, nk, d]; ``keep`` broadcasts to [b, h, nq, nk] (True = attend)."""
        b, nq, _ = x_q.shape
        nk = x_kv.shape[1]
        q = self.q_proj(x_q).view(b, nq, self.num_heads, self.d_head).transpose(1, 2)
        k = self.k_proj(x_kv).view(b, nk, self.num_kv_heads, self.d_head).transpose(1, 2)
        v = self.v_proj(x_kv).view(b, nk, self.num_kv_heads, self.d_head).transpose(1, 2)
        with sdpa_kernel([SDPBackend.MATH]):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, enable_gqa=True)
        out = out.transpose(1, 2).reshape(b, nq, self.num_heads * self.d_head)
        result: Tensor = self.o_proj(out)
        return result


def to_module_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Canonical ``w_q/w_k/w_v/w_o`` names -> ``q_proj/k_proj/v_proj/o_proj``."""
    names = {"w_q": "q_proj", "w_k": "k_proj", "w_v": "v_proj", "w_o": "o_proj"}
    return {f"{names[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in state.items()}


class TorchGQAAdapter(Adapter):
    """``GQAttention`` (MHA) and SDPA with ``enable_gqa`` (attention), two KV heads.

    Claims: mha.gqa-projections, gqa.repeat-equivalence.
    """

    name = "torch-gqa"
    capabilities = frozenset({Capability.ATTENTION, Capability.MHA})
    conventions = Conventions(
        mask_polarity="true_attends",
        causal_alignment="top-left",
        fully_masked_row="zero",
        returns_weights=False,
        dtypes=(torch.float32, torch.float64),
    )
    architecture = Architecture(num_kv_heads=NUM_KV_HEADS)

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """SDPA (math backend) on grouped K/V with ``enable_gqa=True``; no weights. An explicit mask
        together with ``is_causal`` is passed as their conjunction (torch refuses both at once)."""
        mask, is_causal = sdpa_mask_and_causal(q, k, mask, is_causal)
        with sdpa_kernel([SDPBackend.MATH]):
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=True
            )
        return out, None

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """``GQAttention`` with ``NUM_KV_HEADS`` KV heads; key padding [b, nk] and attn_mask [nq, nk]
        (True = attend) ANDed into one [b, 1, nq, nk] keep-mask."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(BUILD_SEED)
            module = GQAttention(d_model, num_heads, NUM_KV_HEADS)
        module = module.to(device=device, dtype=dtype)
        if state is not None:
            module.load_state_dict(to_module_state(state))
        module.eval()

        def run(
            x_q: Tensor, x_kv: Tensor, key_padding: Tensor | None = None, attn_mask: Tensor | None = None
        ) -> tuple[Tensor, Tensor | None]:
            keep = None
            if key_padding is not None:
                keep = key_padding[:, None, None, :]
            if attn_mask is not None:
                keep = attn_mask if keep is None else keep & attn_mask
            with torch.no_grad():
                return module(x_q, x_kv, keep), None

        return run


def make() -> TorchGQAAdapter:
    """Factory for ``torch-gqa``."""
    return TorchGQAAdapter()
