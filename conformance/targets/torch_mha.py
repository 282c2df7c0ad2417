"""``torch.nn.MultiheadAttention`` as target ``torch-mha`` (``batch_first=True``).

Canonical reference weights map as ``in_proj_weight = cat(w_q.weight, w_k.weight, w_v.weight)``,
``in_proj_bias = cat(w_q.bias, w_k.bias, w_v.bias)``, ``out_proj = w_o``.

Declared conventions (measured with torch 2.13 on the CPU):

- boolean ``key_padding_mask`` and ``attn_mask``: True = may NOT attend (``true_masks``);
- a query with no visible key gives NaN output and NaN weights (``need_weights=True`` takes the
  unfused path whose softmax over an all ``-inf`` row is NaN);
- per-head weights ``[b, h, q, k]`` are returned (``average_attn_weights=False``).
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from transformer_conformance.adapter import Adapter, Capability, Conventions

#: Seed for layers built without a ``state``.
BUILD_SEED = 0


def to_torch_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Canonical ``reference.multihead.MultiHeadAttention`` names -> ``nn.MultiheadAttention`` names."""
    return {
        "in_proj_weight": torch.cat([state["w_q.weight"], state["w_k.weight"], state["w_v.weight"]]),
        "in_proj_bias": torch.cat([state["w_q.bias"], state["w_k.bias"], state["w_v.bias"]]),
        "out_proj.weight": state["w_o.weight"],
        "out_proj.bias": state["w_o.bias"],
    }


class TorchMHAAdapter(Adapter):
    """``nn.MultiheadAttention(d_model, num_heads, batch_first=True)`` in eval mode.

    Claims: mha.fused-equals-per-head, attention.fully-masked-row.
    """

    name = "torch-mha"
    capabilities = frozenset({Capability.MHA})
    conventions = Conventions(
        mask_polarity="true_masks",
        fully_masked_row="nan",
        returns_weights=True,
        dtypes=(torch.float32, torch.float64),
    )

    def build_mha(
        self,
        d_model: int,
        num_heads: int,
        state: dict[str, Tensor] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """The layer with canonical weights mapped in; masks in torch's polarity (True = masked)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(BUILD_SEED)
            module = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        module = module.to(device=device, dtype=dtype)
        if state is not None:
            module.load_state_dict(to_torch_state(state))
        module.eval()

        def run(
            x_q: Tensor, x_kv: Tensor, key_padding: Tensor | None = None, attn_mask: Tensor | None = None
        ) -> tuple[Tensor, Tensor | None]:
            out, weights = module(
                x_q,
                x_kv,
                x_kv,
                key_padding_mask=key_padding,
                attn_mask=attn_mask,
                need_weights=True,
                average_attn_weights=False,
            )
            return out, weights

        return run


def make() -> TorchMHAAdapter:
    """Factory for ``torch-mha``."""
    return TorchMHAAdapter()
