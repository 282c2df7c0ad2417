"""transformers 5.24: two model types whose own default config cannot be used (found by ``make hf-table``).

Standalone reproduction (offline, no weights; the DBRX model is built at tiny sizes):
``.venv/bin/python docs/findings/default_configs_that_do_not_build.py``.

- ``Gemma4AssistantConfig()`` fails its own strict validation (``hidden_size_per_layer_input must be 0,
  got 256``): the default of one field contradicts a validator, so not even the default config can be
  constructed (``hf-causal-lm:gemma4_assistant`` is recorded as not built).
- ``DbrxConfig``'s nested ``DbrxAttentionConfig`` defaults lack ``rope_theta``, which ``DbrxAttention``
  reads at construction, and its default ``clip_qkv=None`` reaches ``torch.clamp(min=None, max=None)`` in
  the forward. ``hf-causal-lm:dbrx`` sets both (``conformance/targets/hf_causal_lm_types.toml``).

Exits 1 when both problems are present.
"""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch
import transformers


def gemma4_assistant_default() -> str | None:
    """The error that constructing the default config raises (None: it constructs)."""
    try:
        transformers.Gemma4AssistantConfig()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1].strip()}"
    return None


def dbrx_tiny(attn_config: dict[str, object]) -> str | None:
    """Build DBRX at tiny sizes with ``attn_config`` and run one forward; the error (None: it runs)."""
    config = transformers.DbrxConfig(
        d_model=32, n_heads=4, n_layers=1, max_seq_len=16, vocab_size=23, pad_token_id=0,
        attn_config={"kv_n_heads": 2, **attn_config},
        ffn_config={"ffn_hidden_size": 64, "moe_num_experts": 4, "moe_top_k": 2},
    )
    try:
        model = transformers.DbrxForCausalLM(config).eval()
        with torch.no_grad():
            model(input_ids=torch.ones(1, 4, dtype=torch.long))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


if __name__ == "__main__":
    problems = {
        "Gemma4AssistantConfig()": gemma4_assistant_default(),
        "DBRX, default attention config": dbrx_tiny({}),
        "DBRX, rope_theta set, clip_qkv default": dbrx_tiny({"rope_theta": 10000.0}),
    }
    works = dbrx_tiny({"rope_theta": 10000.0, "clip_qkv": 8.0})
    for what, error in problems.items():
        print(f"{what}: {error or 'ok'}")
    print(f"DBRX with rope_theta and clip_qkv set: {works or 'ok'}")
    sys.exit(1 if all(problems.values()) and works is None else 0)
