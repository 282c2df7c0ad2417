"""transformers 5.24 Mistral with ``sliding_window=1``: cached decoding disagrees with the full forward.

Standalone reproduction (offline, random weights, no download):
``.venv/bin/python docs/findings/mistral_sliding_window_1_cache.py``.
With a window of w, position t may attend to keys t-w+1 .. t. The full forward builds exactly that mask;
for a window of 1 each token sees only itself. The cache layer of sliding-window layers keeps the last
``w - 1`` keys before appending the new one, written ``keys[:, :, -sliding_window + 1:]``; for w = 1
that slice is ``[:, :, 0:]`` (every key), so a cached step attends to the whole past. Found by
``hf-causal-lm:mistral`` (check ``lm.cache-equals-recompute``) with the window set to 1; windows >= 2 agree.
Prints the error of each cached step against the full forward (through the project's tolerance policy)
and exits 1 when the bug is present.
"""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch
import transformers

from transformer_conformance.reference.tolerance import direct


def cached_vs_full(window: int, length: int = 6) -> list[bool]:
    """Whether each token-by-token cached step matches the full forward, for one window size."""
    config = transformers.MistralConfig(
        vocab_size=23,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        sliding_window=window,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=None,
    )
    torch.manual_seed(0)
    model = transformers.MistralForCausalLM(config).eval()
    ids = torch.randint(1, 23, (1, length), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(input_ids=ids).logits
        cache, ok = None, []
        for t in range(length):
            out = model(input_ids=ids[:, t : t + 1], cache=cache, use_cache=True)
            cache = out.cache
            comparison = direct(out.logits[:, 0], full[:, t].double())
            ok.append(comparison.ok)
            print(f"window {window} step {t}: {comparison.describe()}")
    return ok


if __name__ == "__main__":
    print("transformers", transformers.__version__)
    window_1 = cached_vs_full(1)
    window_2 = cached_vs_full(2)
    print("window 1: cached == full at every step:", all(window_1))
    print("window 2: cached == full at every step:", all(window_2))
    sys.exit(0 if all(window_1) else 1)
