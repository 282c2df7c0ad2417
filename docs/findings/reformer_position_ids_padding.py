"""transformers 5.24 Reformer: ``position_ids`` with a length that is no multiple of the chunk length raise.

Standalone reproduction (offline, tiny random weights, no download):
``.venv/bin/python docs/findings/reformer_position_ids_padding.py``.
``ReformerModel`` pads inputs to a multiple of its attention chunk length
(``_pad_to_mult_of_chunk_length``). When ``position_ids`` are given it first overwrites ``input_shape``
with the padded shape and then calls ``torch.arange(input_shape[-1], padded_seq_length)`` -- the start is
already past the end -- and the next line would ``expand`` the 2-D ``position_ids`` as if they were 1-D.
So any forward with explicit ``position_ids`` (what ``generate()``-style left padding needs) and a length
that is not a multiple of the chunk length raises ``RuntimeError: upper bound and lower bound
inconsistent with step sign``; without ``position_ids`` the same input runs. Found by
``hf-causal-lm:reformer`` (every check that feeds 5 or 7 tokens). Exits 1 when the bug is present.
"""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch
import transformers


def forward_error(**kwargs: torch.Tensor) -> str | None:
    """The error a 5-token forward raises (None: it runs)."""
    config = transformers.ReformerConfig(
        vocab_size=23, hidden_size=32, num_attention_heads=4, attention_head_size=8, feed_forward_size=64,
        attn_layers=["local", "local"], local_attn_chunk_length=4, axial_pos_shape=[8, 16],
        axial_pos_embds_dim=[16, 16], max_position_embeddings=128, pad_token_id=0, is_decoder=True,
    )
    torch.manual_seed(0)
    model = transformers.ReformerModelWithLMHead(config).eval()
    try:
        with torch.no_grad():
            model(input_ids=torch.ones(2, 5, dtype=torch.long), **kwargs)
    except RuntimeError as exc:
        return str(exc)
    return None


if __name__ == "__main__":
    with_positions = forward_error(position_ids=torch.arange(5).expand(2, 5))
    without = forward_error()
    print(f"5 tokens with position_ids: {with_positions or 'ok'}; without: {without or 'ok'}")
    sys.exit(1 if with_positions and without is None else 0)
