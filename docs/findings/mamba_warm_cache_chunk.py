"""transformers 5.24 Mamba: a chunk of several tokens on a warm cache silently ignores the cached state.

Standalone reproduction (offline, random weights, no download):
``.venv/bin/python docs/findings/mamba_warm_cache_chunk.py``.
The slow (pure torch) mixer path uses the cached convolution and recurrent states only when the new input
has one token (``seq_len == 1``); a chunk of 2 tokens after a prefill restarts from a zero state, so its
logits differ from the full forward on the whole sequence, with no error. ``generate()`` never feeds such
chunks (prefill once, then single tokens), but chunked prefill or speculative decoding does. Found by
``hf-causal-lm:mamba`` and ``hf-causal-lm:falcon_mamba`` (check ``lm.chunked-prefill``). Exits 1 when the
bug is present.
"""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch
import transformers

from transformer_conformance.reference.tolerance import direct

if __name__ == "__main__":
    config = transformers.MambaConfig(
        vocab_size=23, hidden_size=32, state_size=8, num_hidden_layers=2, pad_token_id=0
    )
    torch.manual_seed(0)
    model = transformers.MambaForCausalLM(config).eval()
    ids = torch.randint(1, 23, (1, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(input_ids=ids).logits
        first = model(input_ids=ids[:, :3], use_cache=True)
        single = model(input_ids=ids[:, 3:4], cache=first.cache, use_cache=True)
        first = model(input_ids=ids[:, :3], use_cache=True)
        chunk = model(input_ids=ids[:, 3:5], cache=first.cache, use_cache=True)
    one = direct(single.logits[:, 0], full[:, 3].double())
    two = direct(chunk.logits, full[:, 3:5].double())
    print("transformers", transformers.__version__)
    print("warm cache, 1 new token :", one.describe())
    print("warm cache, 2 new tokens:", two.describe())
    sys.exit(0 if two.ok else 1)
