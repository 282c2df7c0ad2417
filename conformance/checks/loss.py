"""Checks of the training loss (Capability.LOSS): next-token cross-entropy with the shift and with pad
targets ignored, against the float64 reference ``reference.loss.next_token_loss``.
"""

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.checks.layers import SIDES, batch_keep
from transformer_conformance.context import CheckContext
from transformer_conformance.reference.loss import next_token_loss
from transformer_conformance.registry import check
from transformer_conformance.search import search
from transformer_conformance.strategies import Example, lm_batch_example, sizes_example

LOSS = Capability.LOSS
VOCAB, PAD = 11, 0


def target_loss(ctx: CheckContext, logits: Tensor, ids: Tensor, pad_id: int | None) -> Tensor:
    """The target's loss: a scalar (shape () or a one-element tensor) in a floating dtype."""
    ctx.record(logits=logits, ids=ids, pad_id=pad_id)
    value = ctx.call(ctx.adapter.next_token_loss, logits, ids, pad_id)
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.reshape(())
    ctx.expect_shape("loss", value, ())
    # in the logits' dtype: a loss silently computed in lower precision would otherwise be judged
    # by that precision's looser tolerance
    ctx.expect_dtype("loss", value, logits.dtype)
    tensor: Tensor = value
    return tensor.detach()


def compare_with_reference(
    ctx: CheckContext, what: str, logits: Tensor, ids: Tensor, pad_id: int | None
) -> Tensor:
    """Differential comparison of the target's loss with the reference (float64 oracle, same-dtype run)."""
    got = target_loss(ctx, logits, ids, pad_id)
    oracle = next_token_loss(logits.to(torch.float64), ids, pad_id=pad_id)
    base = next_token_loss(logits, ids, pad_id=pad_id)
    ctx.compare(what, got, oracle, base)
    return got


def _real_ids(ctx: CheckContext, b: int, n: int) -> Tensor:
    return ctx.randint(VOCAB, (b, n), low=PAD + 1)


@check("loss.value", claims=("loss.shifted-cross-entropy",), needs=(LOSS,), kind="differential")
def loss_value(ctx: CheckContext) -> None:
    """Without padding the loss is mean over t of -log softmax(logits[:, t])[ids[:, t + 1]] (float64
    reference), for length 2 and longer; the last position's logits and the first token are never used."""

    def prop(example: Example) -> None:
        b, n = example["b"], example["n"]
        logits = ctx.randn(b, n, VOCAB, scale=2.0)
        ids = _real_ids(ctx, b, n)
        got = compare_with_reference(
            ctx, f"loss of a {b}x{n} batch (pad_id={PAD}, no pads)", logits, ids, PAD
        )
        compare_with_reference(ctx, f"loss of a {b}x{n} batch (pad_id=None)", logits, ids, None)
        unused = logits.clone()
        unused[:, -1] = ctx.randn(b, VOCAB, scale=5.0)
        first_changed = ids.clone()
        first_changed[:, 0] = _real_ids(ctx, b, 1)[:, 0]
        for what, lg, ii in (
            ("last position's logits changed", unused, ids),
            ("first token changed", logits, first_changed),
        ):
            ctx.compare_direct(
                f"loss with the {what} (not a prediction or not a target)",
                target_loss(ctx, lg, ii, PAD),
                got.to(torch.float64),
            )

    fixed = [{"b": 1, "n": 2}, {"b": 3, "n": 6}]
    search(ctx, prop, fixed=fixed, strategy=sizes_example(b=(1, 4), n=(2, 8)))


@check(
    "loss.ignores-padding",
    claims=("loss.ignores-padding",),
    needs=(LOSS,),
    depends_on=("loss.value",),
    kind="differential",
)
def loss_ignores_padding(ctx: CheckContext) -> None:
    """With right or left padding (lengths 1..n in one batch) the loss equals the reference's mean over
    non-pad targets, and logits whose target is a pad can take any value."""

    def prop(example: Example) -> None:
        b, n, side = int(example["b"]), int(example["n"]), example["side"]
        keep = batch_keep(ctx, [int(v) for v in example["lengths"]], n, side)
        ids = torch.where(keep, _real_ids(ctx, b, n), torch.full_like(keep, PAD, dtype=torch.int64))
        logits = ctx.randn(b, n, VOCAB, scale=2.0)
        what = f"{side}-padded {b}x{n} batch (lengths {example['lengths']})"
        got = compare_with_reference(ctx, what, logits, ids, PAD)
        pad_target = torch.zeros_like(keep)
        pad_target[:, :-1] = ~keep[:, 1:]
        changed = torch.where(pad_target.unsqueeze(-1), ctx.randn(b, n, VOCAB, scale=10.0), logits)
        ctx.compare_direct(
            f"{what} with the logits of pad targets changed",
            target_loss(ctx, changed, ids, PAD),
            got.to(torch.float64),
        )

    # each side with lengths 6, 1 and 3; then batch, length, side and lengths drawn (sample 0 has at
    # least one target)
    fixed = [{"b": 3, "n": 6, "side": side, "lengths": [6, 1, 3]} for side in SIDES]
    drawn = lm_batch_example(batch=(1, 4), length=(2, 8), first_at_least=2)
    search(ctx, prop, fixed=fixed, strategy=drawn)
