"""Next-token cross-entropy: logits at position t predict the token at position t + 1.

The shift is the whole point: scoring position t against the token *at* t (no shift) lets a model
that copies its input reach zero loss without predicting anything.
"""

import torch
from jaxtyping import Float, Int
from torch import Tensor

from transformer_conformance.reference.checking import (
    ReferenceInputError,
    checked,
    require,
    require_floating,
    require_same_device,
    require_token_ids,
)


@checked
def next_token_loss(
    logits: Float[Tensor, "batch length vocab"], ids: Int[Tensor, "batch length"], *, pad_id: int | None
) -> Float[Tensor, ""]:
    """Mean over counted targets of ``-log softmax(logits[:, t])[ids[:, t + 1]]``.

    Targets equal to ``pad_id`` are ignored (``pad_id=None`` counts every target). The mean is over
    all counted tokens of the batch (token-level, like ``cross_entropy(ignore_index=...)``). Log-softmax
    runs in float32 at least; the scalar is returned in the logits' dtype. A batch without any counted
    target is an error (it would otherwise be 0/0 = NaN).

    Claims: loss.shifted-cross-entropy, loss.ignores-padding.
    """
    require_floating("logits", logits)
    require_same_device(logits=logits, ids=ids)
    require(ids.shape[1] >= 2, "ids", "length >= 2 (at least one next-token target)", tuple(ids.shape))
    targets = ids[:, 1:]
    counted = torch.ones_like(targets, dtype=torch.bool) if pad_id is None else targets != pad_id
    num_counted = int(counted.sum())
    if num_counted == 0:
        raise ReferenceInputError(
            f"argument 'ids': expected at least one target that is not pad_id={pad_id}, "
            f"got {targets.numel()} targets, all padding"
        )
    require_token_ids("ids", targets[counted], logits.shape[-1])
    work_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    log_probs = torch.log_softmax(logits[:, :-1].to(work_dtype), dim=-1)
    safe_targets = torch.where(counted, targets, torch.zeros_like(targets))
    picked = log_probs.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)
    total = -(picked * counted.to(work_dtype)).sum()
    return (total / num_counted).to(logits.dtype)
