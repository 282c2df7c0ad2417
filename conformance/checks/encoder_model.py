"""Checks of an encoder-only model (``Capability.ENCODER``, BERT-like): ``hidden(ids, pad_mask)``.

The handle maps token ids [b, l] and a pad mask [b, l] (canonical True = real token, converted to the
declared polarity by ``ctx.to_target_mask``; ``None`` = no padding) to the last hidden states
[b, l, d_model]. The oracle is ``reference.variant_encdec.VariantEncoder`` of the declared architecture
and config fields, with the same canonical weights. Only real positions carry a contract.
"""

from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.checks.layers import (
    SIDES,
    batch_keep,
    canonical_module,
    expect_tensor,
    keep_from_lengths,
    layer_config,
    mixed_lengths,
    oracle_copies,
    require_weights,
    run_oracle,
    same_rows,
    state_of,
)
from transformer_conformance.context import CheckContext, FailureKind
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.tolerance import direct
from transformer_conformance.reference.variant_encdec import VariantEncoder
from transformer_conformance.registry import check
from transformer_conformance.search import search
from transformer_conformance.strategies import Example, data_seeds, padded_batch_example

ENC = Capability.ENCODER


class _Encoder:
    """The target's encoder handle and the canonical reference ``VariantEncoder`` (float64, CPU)."""

    def __init__(self, ctx: CheckContext, **overrides: Any) -> None:
        self.ctx = ctx
        self.cfg: TransformerConfig = layer_config(ctx, **overrides)
        cfg = self.cfg
        self.module = canonical_module(ctx, lambda: VariantEncoder(cfg))
        self.handle = ctx.call(
            ctx.adapter.build_encoder, cfg, state_of(ctx, self.module), ctx.device, ctx.dtype
        )

    def ids(self, b: int, n: int) -> Tensor:
        """Random real token ids (never the pad id)."""
        ids = self.ctx.randint(self.cfg.vocab_size - 1, (b, n))
        return torch.where(ids >= self.cfg.pad_id, ids + 1, ids)

    def with_pads(self, ids: Tensor, keep: Tensor, random: bool) -> Tensor:
        """``ids`` with the pad positions set to ``pad_id`` or (``random``) to arbitrary ids."""
        filler = (
            self.ctx.randint(self.cfg.vocab_size, tuple(ids.shape))
            if random
            else torch.full_like(ids, self.cfg.pad_id)
        )
        return torch.where(keep, ids, filler)

    def hidden(self, ids: Tensor, keep: Tensor | None = None) -> Tensor:
        """The handle's hidden states, shape- and dtype-checked."""
        self.ctx.record(ids=ids, pad_mask=keep)
        y = self.ctx.call(self.handle.hidden, ids, self.ctx.to_target_mask(keep))
        return expect_tensor(self.ctx, "encoder hidden states", y, (*ids.shape, self.cfg.d_model))


@check(
    "encoder.shape",
    claims=("encoder.output-per-position",),
    needs=(ENC,),
    kind="structural",
)
def encoder_shape(ctx: CheckContext) -> None:
    """encoder-only model: hidden states [b, l, d_model] in the working dtype, finite at real positions,
    for length 1, a longer batch and a right-padded batch."""
    e = _Encoder(ctx)

    def prop(example: Example) -> None:
        b, n = example["b"], example["n"]
        ids = e.ids(b, n)
        ctx.expect_finite("hidden states (no padding)", e.hidden(ids))
        keep = batch_keep(ctx, example["n_lens"], n, example["side"])
        ctx.expect_finite(
            "hidden states at real positions", e.hidden(e.with_pads(ids, keep, False), keep)[keep]
        )

    # length 1 and a right-padded 2 x 5, then batches drawn by hypothesis (sizes, lengths, side)
    fixed: list[Example] = [{"b": 2, "n": n, "side": "right", "n_lens": [n, 1]} for n in (1, 5)]
    drawn = padded_batch_example(dims={"n": (1, 7)})
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


@check(
    "encoder.padding-invariance",
    claims=(
        "encoder.model-padding-invariance",
        "mask.padding.invariance",
        "mask.padding.pad-value-arbitrary",
    ),
    needs=(ENC,),
    depends_on=("encoder.shape",),
    kind="metamorphic",
)
def encoder_padding_invariance(ctx: CheckContext) -> None:
    """encoder-only model: random ids under the padding (left and right, lengths 1..n) change no hidden
    state at a real position, and each right-padded row's real positions equal that row run alone
    without its pads."""
    e, b, n = _Encoder(ctx), 3, 6

    def prop(example: Example) -> None:
        side = example["side"]
        lengths = mixed_lengths(ctx, b, n)
        keep = keep_from_lengths(ctx, lengths, n, side)
        ids = e.ids(b, n)
        base = e.hidden(e.with_pads(ids, keep, False), keep)
        y = e.hidden(e.with_pads(ids, keep, True), keep)
        same_rows(ctx, f"{side}-padded batch with random pad ids: real positions", y, base, keep)
        if side == "right":
            for i, length in enumerate(lengths):
                alone = e.hidden(ids[i : i + 1, :length])
                same_rows(
                    ctx,
                    f"row {i} (length {length}) unpadded vs right-padded",
                    alone[0],
                    base[i, :length],
                    None,
                )

    # each side, then sides, lengths and (pad) ids drawn by hypothesis
    drawn = st.fixed_dictionaries({"side": st.sampled_from(SIDES), "data": data_seeds()})
    search(
        ctx,
        prop,
        fixed=[{"side": side} for side in SIDES],
        strategy=drawn,
        examples=max(1, ctx.examples // 2),
    )


@check(
    "encoder.batch-independence",
    claims=("batch.independence",),
    needs=(ENC,),
    depends_on=("encoder.shape",),
    kind="metamorphic",
)
def encoder_batch_independence(ctx: CheckContext) -> None:
    """encoder-only model: each sample's hidden states equal its hidden states alone and ignore the
    other samples' tokens and lengths."""
    e = _Encoder(ctx)

    def prop(example: Example) -> None:
        b, n, side, lens = example["b"], example["n"], example["side"], example["n_lens"]
        keep = batch_keep(ctx, lens, n, side)
        ids = e.with_pads(e.ids(b, n), keep, False)
        together = e.hidden(ids, keep)
        for i in range(b):
            alone = e.hidden(ids[i : i + 1], keep[i : i + 1])
            same_rows(ctx, f"sample {i} alone vs in the batch", alone[0], together[i], keep[i])
        # the other samples replaced by new tokens with other lengths: sample 0 must not move
        others = batch_keep(ctx, [lens[0], *example["n_others"]], n, side)
        ids2 = e.with_pads(e.ids(b, n), others, False)
        ids2[0] = ids[0]
        changed = e.hidden(ids2, others)
        same_rows(ctx, "sample 0 after changing the other samples", changed[0], together[0], keep[0])

    # the former 3 x 5 batch (lengths 3, 5, 1; others 1, 5), then drawn by hypothesis: sizes, each
    # sample's length, the other samples' new lengths, the padding side
    fixed: list[Example] = [{"b": 3, "n": 5, "side": "right", "n_lens": [3, 5, 1], "n_others": [1, 5]}]
    drawn = padded_batch_example(batch=(2, 4), dims={"n": (1, 7)}, others=True)
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


@check(
    "encoder.bidirectional",
    claims=("encoder.model-bidirectional", "encoder.bidirectional"),
    needs=(ENC,),
    depends_on=("encoder.shape",),
    kind="metamorphic",
)
def encoder_bidirectional(ctx: CheckContext) -> None:
    """encoder-only model: replacing the token at a later position j moves the hidden states at every
    earlier position (the encoder is not causal), for every j >= 1."""
    e = _Encoder(ctx)

    def prop(example: Example) -> None:
        b, n, j = example["b"], example["n"], example["j"]
        ids = e.ids(b, n)
        base = e.hidden(ids)
        ids2 = ids.clone()
        ids2[:, j] = (ids[:, j] + 1 + e.ids(b, 1)[:, 0] % (e.cfg.vocab_size - 2)) % e.cfg.vocab_size
        ids2[:, j] = torch.where(ids2[:, j] == e.cfg.pad_id, (ids2[:, j] + 1) % e.cfg.vocab_size, ids2[:, j])
        y = e.hidden(ids2)
        for i in range(j):
            result = direct(y[:, i], base[:, i].to(torch.float64))
            if result.ok:
                ctx.fail(
                    FailureKind.PROPERTY,
                    f"hidden states at position {i} did not change when the token at the later position {j} "
                    f"changed ({result.describe()}): position {i} does not see later tokens (a causal mask "
                    "in an encoder?)",
                )

    # every later position j of the former 2 x 5, then drawn by hypothesis: sizes and the position j
    fixed: list[Example] = [{"b": 2, "n": 5, "j": j} for j in range(1, 5)]
    later = {"j": lambda example: st.integers(1, example["n"] - 1)}
    drawn = padded_batch_example(batch=(1, 3), dims={"n": (2, 7)}, padded=(), extras=later)
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


@check(
    "encoder.determinism",
    claims=("determinism.eval",),
    needs=(ENC,),
    depends_on=("encoder.shape",),
    kind="metamorphic",
)
def encoder_determinism(ctx: CheckContext) -> None:
    """encoder-only model: built with dropout 0.1 and used for inference, repeated calls give the same
    hidden states (dropout off)."""
    e = _Encoder(ctx, dropout=0.1)

    def prop(example: Example) -> None:
        b, n = example["b"], example["n"]
        keep = batch_keep(ctx, example["n_lens"], n, example["side"])
        ids = e.with_pads(e.ids(b, n), keep, False)
        first = e.hidden(ids, keep)
        for _ in range(2):
            same_rows(
                ctx,
                "a second call on the same input (config dropout 0.1, eval)",
                e.hidden(ids, keep),
                first,
                keep,
            )

    # the former right-padded 2 x 5 (lengths 5, 2), then batches drawn by hypothesis
    fixed: list[Example] = [{"b": 2, "n": 5, "side": "right", "n_lens": [5, 2]}]
    drawn = padded_batch_example(batch=(1, 3), dims={"n": (1, 7)})
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


@check(
    "encoder.reference",
    claims=("encoder.output-per-position", "embedding.plus-positional"),
    needs=(ENC,),
    depends_on=("encoder.shape",),
    kind="differential",
)
def encoder_reference(ctx: CheckContext) -> None:
    """encoder-only model: same canonical weights, left- and right-padded batches: hidden states at real
    positions match the float64 reference encoder of the declared architecture."""
    require_weights(ctx)
    e = _Encoder(ctx)
    oracle, same = oracle_copies(ctx, e.module)

    def prop(example: Example) -> None:
        b, n, side = example["b"], example["n"], example["side"]
        keep = batch_keep(ctx, example["n_lens"], n, side)
        ids = e.with_pads(e.ids(b, n), keep, False)
        y = e.hidden(ids, keep)
        want, base = run_oracle(oracle, ids, keep), run_oracle(same, ids, keep)
        ctx.compare(f"{side}-padded batch: hidden states vs reference", y[keep], want[keep], base[keep])

    # each side at 3 x 6 (lengths 1, 6, 4), then batches drawn by hypothesis (sizes, lengths, side)
    fixed: list[Example] = [{"b": 3, "n": 6, "side": side, "n_lens": [1, 6, 4]} for side in SIDES]
    drawn = padded_batch_example(dims={"n": (1, 7)})
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)
