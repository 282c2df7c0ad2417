"""transformers 5.24 RecurrentGemma: left padding changes the logits of the real tokens.

Standalone reproduction (offline, tiny random weights, no download):
``.venv/bin/python docs/findings/recurrent_gemma_left_padding.py``.
A sequence alone and the same sequence after two left pad tokens (``attention_mask`` 0 there, positions
counted from the first real token as ``generate()`` does) give different logits at the real positions.
The RG-LRU itself resets its state where ``position_ids == 0`` (the first real token), but the recurrent
block's temporal Conv1D (``conv1d_width`` 4) runs over the pad tokens without the mask, so the pads'
embeddings reach the first ``conv1d_width - 1`` real positions and, through them, every later one. With
``conv1d_width=1`` the difference vanishes. Found by ``hf-causal-lm:recurrent_gemma`` (check
``lm.padding-invariance``, left side; right padding is fine). Exits 1 when the bug is present.
"""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch
import transformers

from transformer_conformance.reference.tolerance import tolerance_for


def left_padding_error(conv1d_width: int) -> float:
    """max |logits alone - logits after two left pads| at the real positions."""
    config = transformers.RecurrentGemmaConfig(
        vocab_size=23, hidden_size=32, lru_width=32, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, intermediate_size=64, pad_token_id=0,
        conv1d_width=conv1d_width, block_types=["recurrent", "recurrent", "attention"],
    )
    torch.manual_seed(0)
    model = transformers.RecurrentGemmaForCausalLM(config).eval()
    ids = torch.randint(1, 23, (1, 5), generator=torch.Generator().manual_seed(1))
    padded = torch.cat([torch.tensor([[7, 9]]), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 2, dtype=torch.long), torch.ones_like(ids)], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        alone = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        left = model(input_ids=padded, attention_mask=mask, position_ids=positions).logits[:, 2:]
    return float((alone - left).abs().max())


if __name__ == "__main__":
    error, without_conv = left_padding_error(4), left_padding_error(1)
    allowed = tolerance_for(torch.float32).atol
    print(f"left padding, conv1d_width=4: max error {error:.3g}; conv1d_width=1: {without_conv:.3g}")
    sys.exit(1 if error > allowed and without_conv <= allowed else 0)
