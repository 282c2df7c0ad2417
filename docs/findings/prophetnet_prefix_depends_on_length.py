"""transformers 5.24 ProphetNetForCausalLM: a prefix's logits depend on how many tokens follow it.

Standalone reproduction (offline, tiny random weights, no download):
``.venv/bin/python docs/findings/prophetnet_prefix_depends_on_length.py``.
Causality holds (changing later tokens leaves earlier logits unchanged), but the logits at positions
0..2 of a 6-token input differ from those of the same 3 tokens alone by ~1e-3 in float32 -- 100x the
float32 tolerance -- so cached decoding and teacher forcing disagree with recomputing a prefix. Where in
the two-stream (main + n-gram predict) decoder the length enters is not isolated here. Found by
``hf-causal-lm:prophetnet`` (checks ``lm.cache-equals-recompute`` and ``lm.teacher-forcing``). Exits 1 when
the difference exceeds the float32 tolerance.
"""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch
import transformers

from transformer_conformance.reference.tolerance import tolerance_for

if __name__ == "__main__":
    config = transformers.ProphetNetConfig(
        vocab_size=23, hidden_size=32, num_encoder_layers=1, num_decoder_layers=2,
        num_encoder_attention_heads=4, num_decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=128, pad_token_id=0, dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, is_decoder=True,
    )
    torch.manual_seed(0)
    model = transformers.ProphetNetForCausalLM(config).eval()
    ids = torch.randint(1, 23, (2, 6), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, 3:] = (ids[:, 3:] + 5) % 22 + 1
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
        other_suffix = model(input_ids=changed, attention_mask=torch.ones_like(ids), use_cache=False).logits
        head = ids[:, :3]
        prefix = model(input_ids=head, attention_mask=torch.ones_like(head), use_cache=False).logits
    length_error = float((full[:, :3] - prefix).abs().max())
    suffix_error = float((full[:, :3] - other_suffix[:, :3]).abs().max())
    allowed = tolerance_for(torch.float32).atol
    print(f"positions 0..2, 6 tokens vs 3 alone: {length_error:.3g}; other later tokens: {suffix_error:.3g}")
    sys.exit(1 if length_error > 10 * allowed else 0)
