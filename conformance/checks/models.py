"""Checks of whole models: the encoder-decoder handle and the decoder-only LM handle.

Handles (docs/ARCHITECTURE.md): an LM exposes ``logits(ids, pad_mask)``, ``new_cache(batch)`` and
``step(ids_chunk, cache)``; an encoder-decoder exposes ``encode(src, src_pad)``,
``decode(tgt, memory, src_pad, tgt_pad)``, ``new_cache(batch)`` and ``step(tgt_chunk, memory, cache,
src_pad)``. Pad masks are canonical (True = real token) and reach the target through
``ctx.to_target_mask``. Inputs are adversarial: lengths 1..n in one batch, left and right padding,
pad ids replaced by random ids, chunks of several tokens on a warm cache.

Teacher forcing is compared with fresh, uncached passes on every prefix (so a cache bug cannot fail
it); the cache checks compare token-by-token steps, chunks on a warm cache and padded prompts
(``step(ids_chunk, cache, pad_mask_chunk)``) with the uncached forward.
"""

import inspect
import itertools
import threading
from collections.abc import Iterator
from functools import partial
from types import TracebackType
from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor, nn

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
from transformer_conformance.context import CheckContext, CheckFailure, FailureKind, NotApplicable
from transformer_conformance.evidence import StepErrors, attached, influence_map, run_steps
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.model import DecoderOnlyLM, EncoderDecoder
from transformer_conformance.reference.variant_encdec import VariantEncoderDecoder
from transformer_conformance.reference.variant_lm import VariantLM
from transformer_conformance.registry import check
from transformer_conformance.search import search
from transformer_conformance.strategies import (
    SEQ2SEQ_SIDES,
    Example,
    cache_schedule,
    data_seeds,
    lm_batch_example,
    padded_cache_example,
    schedule_example,
    seq2seq_example,
    sizes_example,
)

LM = Capability.DECODER_LM
ED = Capability.ENCODER_DECODER

#: Chunk sizes of the chunked-prefill checks: a prefill of 3 from an empty cache, then 2 on a warm
#: cache, then single tokens and another chunk.
CHUNKS: tuple[int, ...] = (3, 2, 1, 2)
SEQ = sum(CHUNKS)
#: One judged step of a cache check: (short label, description, target logits, expected, keep).
Step = tuple[str, str, Any, Tensor, Tensor | None]

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _build(ctx: CheckContext, cfg: TransformerConfig, kind: Capability) -> tuple[Any, nn.Module]:
    """(target handle, canonical reference model in float64 on CPU): for an LM, the notes'
    ``DecoderOnlyLM`` or, when the target declares another architecture, a ``VariantLM`` of it (whose
    canonical state uses the VariantLM names, reference/variant_lm.py); for an encoder-decoder, the notes'
    ``EncoderDecoder`` or a ``VariantEncoderDecoder`` (reference/variant_encdec.py)."""
    if kind == LM:
        variant = cfg.arch != Architecture()
        module = canonical_module(ctx, lambda: VariantLM(cfg) if variant else DecoderOnlyLM(cfg))
        handle = ctx.call(ctx.adapter.build_lm, cfg, state_of(ctx, module), ctx.device, ctx.dtype)
    else:
        variant = cfg.arch != Architecture()
        module = canonical_module(ctx, lambda: VariantEncoderDecoder(cfg) if variant else EncoderDecoder(cfg))
        handle = ctx.call(
            ctx.adapter.build_encoder_decoder, cfg, state_of(ctx, module), ctx.device, ctx.dtype
        )
    return handle, module


def _ids(ctx: CheckContext, cfg: TransformerConfig, b: int, n: int) -> Tensor:
    """Random token ids that avoid the pad id (real tokens)."""
    ids = ctx.randint(cfg.vocab_size - 1, (b, n), low=0)
    return torch.where(ids >= cfg.pad_id, ids + 1, ids)


def _with_pads(ctx: CheckContext, cfg: TransformerConfig, ids: Tensor, keep: Tensor, random: bool) -> Tensor:
    """``ids`` with pad positions set to ``pad_id`` or (``random``) to arbitrary ids."""
    filler = ctx.randint(cfg.vocab_size, tuple(ids.shape)) if random else torch.full_like(ids, cfg.pad_id)
    return torch.where(keep, ids, filler)


def lm_logits(
    ctx: CheckContext, handle: Any, cfg: TransformerConfig, ids: Tensor, keep: Tensor | None
) -> Tensor:
    """The LM handle's logits, shape- and dtype-checked."""
    ctx.record(ids=ids, pad_mask=keep)
    y = ctx.call(handle.logits, ids, ctx.to_target_mask(keep))
    return expect_tensor(ctx, "LM logits", y, (*ids.shape, cfg.vocab_size))


def lm_step(ctx: CheckContext, handle: Any, cfg: TransformerConfig, chunk: Tensor, cache: Any) -> Tensor:
    """One LM step on the cache, shape- and dtype-checked."""
    y = ctx.call(handle.step, chunk, cache)
    return expect_tensor(
        ctx, f"LM step logits (chunk of {chunk.shape[1]})", y, (*chunk.shape, cfg.vocab_size)
    )


def ed_decode(
    ctx: CheckContext,
    handle: Any,
    cfg: TransformerConfig,
    src: Tensor,
    tgt: Tensor,
    src_keep: Tensor | None,
    tgt_keep: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """(memory, teacher-forced logits) of the encoder-decoder handle, shape- and dtype-checked."""
    ctx.record(src=src, tgt=tgt, src_pad=src_keep, tgt_pad=tgt_keep)
    memory = ctx.call(handle.encode, src, ctx.to_target_mask(src_keep))
    memory = expect_tensor(ctx, "memory", memory, (*src.shape, cfg.d_model))
    y = ctx.call(handle.decode, tgt, memory, ctx.to_target_mask(src_keep), ctx.to_target_mask(tgt_keep))
    return memory, expect_tensor(ctx, "decoder logits", y, (*tgt.shape, cfg.vocab_size))


def ed_step(
    ctx: CheckContext,
    handle: Any,
    cfg: TransformerConfig,
    chunk: Tensor,
    memory: Tensor,
    cache: Any,
    src_keep: Tensor | None,
) -> Tensor:
    """One encoder-decoder step on the cache, shape- and dtype-checked."""
    y = ctx.call(handle.step, chunk, memory, cache, ctx.to_target_mask(src_keep))
    return expect_tensor(
        ctx, f"decoder step logits (chunk of {chunk.shape[1]})", y, (*chunk.shape, cfg.vocab_size)
    )


class _Pipeline:
    """One model kind behind a common face: full logits, a fresh cache, a step (for the shared checks)."""

    def __init__(self, ctx: CheckContext, kind: Capability, **overrides: Any) -> None:
        self.ctx, self.kind = ctx, kind
        self.cfg = layer_config(ctx, **overrides)
        self.handle, self.module = _build(ctx, self.cfg, kind)
        self.b, self.s = 2, 5
        self.src = _ids(ctx, self.cfg, self.b, self.s)
        self.src_keep = keep_from_lengths(ctx, [self.s, 3], self.s, "right")
        self.memory: Tensor | None = None

    def full(self, ids: Tensor, keep: Tensor | None = None) -> Tensor:
        """Teacher-forced logits of ``ids`` (encoder-decoder: against this pipeline's fixed source)."""
        if self.kind == LM:
            return lm_logits(self.ctx, self.handle, self.cfg, ids, keep)
        memory, y = ed_decode(
            self.ctx,
            self.handle,
            self.cfg,
            self.src[: ids.shape[0]],
            ids,
            self.src_keep[: ids.shape[0]],
            keep,
        )
        self.memory = memory
        return y

    def new_cache(self) -> Any:
        """A fresh cache from the target (the encoder-decoder also encodes the source here)."""
        if self.kind == ED and self.memory is None:
            self.full(_ids(self.ctx, self.cfg, self.b, 1))
        return self.ctx.call(self.handle.new_cache, self.b)

    def step(self, chunk: Tensor, cache: Any) -> Tensor:
        """Logits of the new tokens ``chunk`` on ``cache``."""
        if self.kind == LM:
            return lm_step(self.ctx, self.handle, self.cfg, chunk, cache)
        assert self.memory is not None
        return ed_step(self.ctx, self.handle, self.cfg, chunk, self.memory, cache, self.src_keep)


def _shape(ctx: CheckContext, kind: Capability) -> None:
    p = _Pipeline(ctx, kind)
    for n in (1, 4):
        ids = _ids(ctx, p.cfg, p.b, n)
        ctx.expect_finite("logits (no padding)", p.full(ids))
        keep = keep_from_lengths(ctx, [n, 1], n, "right")
        y = p.full(_with_pads(ctx, p.cfg, ids, keep, random=False), keep)
        ctx.expect_finite("logits at real positions", y[keep])
    cache = p.new_cache()
    for c in (2, 1):
        ctx.expect_finite(f"step logits (chunk of {c})", p.step(_ids(ctx, p.cfg, p.b, c), cache))


def _padding(ctx: CheckContext, kind: Capability) -> None:
    p = _Pipeline(ctx, kind)
    n = 6

    def prop(example: Example) -> None:
        side = example["side"]
        keep = keep_from_lengths(ctx, mixed_lengths(ctx, 3, n), n, side)
        ids = _ids(ctx, p.cfg, 3, n)
        if kind == ED:
            p.src = _ids(ctx, p.cfg, 3, p.s)
            p.src_keep = keep_from_lengths(ctx, mixed_lengths(ctx, 3, p.s), p.s, side)
        base = p.full(_with_pads(ctx, p.cfg, ids, keep, random=False), keep)
        if kind == ED:
            p.src = _with_pads(ctx, p.cfg, p.src, p.src_keep, random=True)
        y = p.full(_with_pads(ctx, p.cfg, ids, keep, random=True), keep)
        same_rows(ctx, f"{side}-padded batch with random pad ids: real positions", y, base, keep)

    # each side, then sides, lengths and (pad) ids drawn by hypothesis
    drawn = st.fixed_dictionaries({"side": st.sampled_from(SIDES), "data": data_seeds()})
    search(
        ctx,
        prop,
        fixed=[{"side": side} for side in SIDES],
        strategy=drawn,
        examples=max(1, ctx.examples // 2),
    )


def _batch(ctx: CheckContext, kind: Capability) -> None:
    p = _Pipeline(ctx, kind)
    n, b = 5, 3
    keep = keep_from_lengths(ctx, [3, n, 1], n, "right")
    ids = _with_pads(ctx, p.cfg, _ids(ctx, p.cfg, b, n), keep, random=False)
    p.src = _ids(ctx, p.cfg, b, p.s)
    p.src_keep = keep_from_lengths(ctx, [2, p.s, 1], p.s, "right")
    together = p.full(ids, keep)
    src, src_keep = p.src, p.src_keep
    for i in range(b):
        p.src, p.src_keep = src[i : i + 1], src_keep[i : i + 1]
        alone = p.full(ids[i : i + 1], keep[i : i + 1])
        same_rows(ctx, f"sample {i} alone vs in the batch", alone[0], together[i], keep[i])
    others = keep_from_lengths(ctx, [3, 1, n], n, "right")
    ids2 = _with_pads(ctx, p.cfg, _ids(ctx, p.cfg, b, n), others, random=False)
    ids2[0] = ids[0]
    p.src = _ids(ctx, p.cfg, b, p.s)
    p.src[0] = src[0]
    p.src_keep = keep_from_lengths(ctx, [2, 1, 4], p.s, "right")
    changed = p.full(ids2, others)
    same_rows(ctx, "sample 0 after changing the other samples", changed[0], together[0], keep[0])


def _causality(ctx: CheckContext, kind: Capability) -> None:
    p = _Pipeline(ctx, kind)

    def prop(example: Example) -> None:
        n = int(example["n"])
        ids = _ids(ctx, p.cfg, p.b, n)
        base = p.full(ids)
        for cut in range(1, n):
            ids2 = ids.clone()
            ids2[:, cut:] = _ids(ctx, p.cfg, p.b, n - cut)
            y = p.full(ids2)
            with attached(partial(_token_influence, p, ids, base)):
                same_rows(
                    ctx,
                    f"logits before position {cut} after changing tokens >= {cut} (n={n})",
                    y[:, :cut],
                    base[:, :cut],
                    None,
                )

    # every cut of a 6-token sequence, then lengths drawn by hypothesis (a failure shrinks to the
    # shortest sequence that shows it)
    search(ctx, prop, fixed=[{"n": 6}], strategy=sizes_example(n=(2, 7)), examples=max(1, ctx.examples // 2))


def _token_influence(p: _Pipeline, ids: Tensor, base: Tensor) -> dict[str, Any]:
    """Evidence ``influence``: which logits positions move when the token at one position alone is
    replaced (by a different id), against the causal pattern (position i may see tokens 0..i)."""
    n = ids.shape[1]

    def outputs(j: int) -> Tensor:
        ids2 = ids.clone()
        ids2[:, j] = (
            ids[:, j] + 1 + _ids(p.ctx, p.cfg, p.b, 1)[:, 0] % (p.cfg.vocab_size - 1)
        ) % p.cfg.vocab_size
        return p.full(ids2)

    visible = torch.ones(n, n, dtype=torch.bool).tril()
    return influence_map(
        outputs, base, visible, "logits of the whole sequence", "logits position", "changed token"
    )


def _determinism(ctx: CheckContext, kind: Capability) -> None:
    p = _Pipeline(ctx, kind, dropout=0.1)
    n = 5
    keep = keep_from_lengths(ctx, [n, 2], n, "right")
    ids = _with_pads(ctx, p.cfg, _ids(ctx, p.cfg, p.b, n), keep, random=False)
    first = p.full(ids, keep)
    for _ in range(2):
        same_rows(
            ctx, "a second call on the same input (config dropout 0.1, eval)", p.full(ids, keep), first, keep
        )


def _cache_vs_recompute(ctx: CheckContext, kind: Capability) -> None:
    p = _Pipeline(ctx, kind)
    ids = _ids(ctx, p.cfg, p.b, SEQ)
    cache = p.new_cache()

    def steps() -> Iterator[Step]:
        for t in range(SEQ):
            stepped = p.step(ids[:, t : t + 1], cache)
            recomputed = p.full(ids[:, : t + 1])[:, t : t + 1]
            yield str(t), f"cached step at position {t} vs recomputing the prefix", stepped, recomputed, None

    run_steps(StepErrors("cached step vs recomputing the prefix"), steps(), partial(same_rows, ctx))


def _expect_teacher_forced(ctx: CheckContext, p: _Pipeline, ids: Tensor) -> None:
    """One parallel pass of ``ids`` vs the last position of a fresh, uncached pass on every prefix: no
    cache is involved, so a KV-cache bug cannot fail it (the ``*.cache-*`` checks catch those)."""
    full = p.full(ids)
    for t in range(ids.shape[1]):
        prefix = p.full(ids[:, : t + 1])[:, t : t + 1]
        ctx.record(ids=ids, prefix_length=t + 1)
        same_rows(
            ctx,
            f"teacher-forced logits at position {t} vs the prefix ids[:, :{t + 1}] alone",
            full[:, t : t + 1],
            prefix,
            None,
        )


#: The name of the pad-mask argument of each handle kind's ``step``.
PAD_ARGUMENT = {LM: "pad_mask_chunk", ED: "tgt_pad_chunk"}


def _padded_step(ctx: CheckContext, p: "_Pipeline", chunk: Tensor, cache: Any, pad: Tensor | None) -> Any:
    """``step(chunk, cache, pad)`` (an encoder-decoder: ``step(chunk, memory, cache, src_pad, pad)``); a
    NotImplementedError is the target saying that it does not support padded chunks (NotApplicable,
    naming its message), any other error a RAISED failure."""
    try:
        if p.kind == LM:
            return ctx.call(p.handle.step, chunk, cache, pad)
        src_pad = ctx.to_target_mask(p.src_keep)
        return ctx.call(p.handle.step, chunk, p.memory, cache, src_pad, pad)
    except CheckFailure as failure:
        if isinstance(failure.__cause__, NotImplementedError):
            raise NotApplicable(
                f"target {ctx.adapter.name!r} declares padded chunks unsupported in step() "
                f"(NotImplementedError: {failure.__cause__})"
            ) from failure
        raise


def _cache_with_padding(ctx: CheckContext, kind: Capability) -> None:
    """Padded prompts decoded on the cache: the prompt as one chunk with its pad mask, then single
    tokens with an all-True mask; real positions must equal the full forward on the same padded ids
    (an encoder-decoder: against one padded source batch)."""
    p = _Pipeline(ctx, kind)
    argument = PAD_ARGUMENT[kind]
    params = inspect.signature(p.handle.step).parameters
    if argument not in params:
        raise NotApplicable(
            f"target {ctx.adapter.name!r}: its {'LM' if kind == LM else 'encoder-decoder'} handle's step() "
            f"takes no {argument}, so padded prompts cannot be decoded on its cache"
        )
    b, prompt, generated = 3, 5, 3
    n = prompt + generated
    if kind == ED:
        p.src = _ids(ctx, p.cfg, b, p.s)
        p.src_keep = keep_from_lengths(ctx, mixed_lengths(ctx, b, p.s), p.s, "right")
    for side in SIDES:
        prompt_keep = keep_from_lengths(ctx, mixed_lengths(ctx, b, prompt), prompt, side)
        keep = torch.cat([prompt_keep, torch.ones(b, generated, dtype=torch.bool, device=ctx.device)], 1)
        ids = _with_pads(ctx, p.cfg, _ids(ctx, p.cfg, b, n), keep, random=True)
        full = p.full(ids, keep)
        cache = ctx.call(p.handle.new_cache, b)
        chunks = [(0, prompt)] + [(t, t + 1) for t in range(prompt, n)]

        def steps(
            ids: Tensor, keep: Tensor, full: Tensor, cache: Any, side: str, chunks: list[tuple[int, int]]
        ) -> Iterator[Step]:
            for start, stop in chunks:
                chunk_keep = keep[:, start:stop]
                ctx.record(ids=ids, pad_mask=keep, chunk=[start, stop])
                y = _padded_step(ctx, p, ids[:, start:stop], cache, ctx.to_target_mask(chunk_keep))
                y = expect_tensor(
                    ctx, f"step logits (chunk of {stop - start})", y, (b, stop - start, p.cfg.vocab_size)
                )
                what = (
                    f"{side}-padded prompt: cached step at positions {start}..{stop - 1} vs the full forward "
                    "(real positions)"
                )
                yield f"{start}..{stop - 1}", what, y, full[:, start:stop], chunk_keep

        trace = StepErrors(f"{side}-padded prompt: cached steps vs the full forward (real positions)")
        run_steps(trace, steps(ids, keep, full, cache, side, chunks), partial(same_rows, ctx))


def _chunked(ctx: CheckContext, kind: Capability) -> None:
    p = _Pipeline(ctx, kind)

    def prop(example: Example) -> None:
        chunks = [int(c) for c in example["chunks"]]
        ids = _ids(ctx, p.cfg, p.b, sum(chunks))
        full = p.full(ids)
        cache = p.new_cache()

        def steps() -> Iterator[Step]:
            start = 0
            for c in chunks:
                got = p.step(ids[:, start : start + c], cache)
                what = (
                    f"chunk of {c} at positions {start}..{start + c - 1} (warm cache of {start}) vs whole "
                    f"sequence (schedule {chunks})"
                )
                yield f"{start}..{start + c - 1}", what, got, full[:, start : start + c], None
                start += c

        run_steps(StepErrors("cached chunks vs the whole sequence"), steps(), partial(same_rows, ctx))

    # the fixed schedule, then cache schedules drawn by hypothesis (prefill chunks, single steps, chunks
    # on a warm cache; a failure shrinks to the simplest schedule that shows it)
    drawn = st.fixed_dictionaries({"chunks": cache_schedule(SEQ), "data": data_seeds()})
    search(ctx, prop, fixed=[{"chunks": list(CHUNKS)}], strategy=drawn, examples=max(1, ctx.examples // 2))


def _reference(ctx: CheckContext, kind: Capability) -> None:
    require_weights(ctx)
    p = _Pipeline(ctx, kind)
    oracle, same = oracle_copies(ctx, p.module)
    n, b = 6, 3
    for side in SIDES:
        keep = keep_from_lengths(ctx, mixed_lengths(ctx, b, n), n, side)
        ids = _with_pads(ctx, p.cfg, _ids(ctx, p.cfg, b, n), keep, random=False)
        if kind == ED:
            p.src = _ids(ctx, p.cfg, b, p.s)
            p.src_keep = keep_from_lengths(ctx, mixed_lengths(ctx, b, p.s), p.s, side)
            args: tuple[Any, ...] = (p.src, ids, p.src_keep, keep)
        else:
            args = (ids, keep)
        y = p.full(ids, keep)
        want = run_oracle(oracle, *args)
        base = run_oracle(same, *args)
        ctx.compare(f"{side}-padded batch: logits vs reference", y[keep], want[keep], base[keep])


# --------------------------------------------------------------------------------------------
# encoder-decoder searches: each property on examples of ``seq2seq_example`` (conformance/strategies.py)
# --------------------------------------------------------------------------------------------


def _lengths(example: Example, key: str) -> list[int]:
    return [int(n) for n in example[key]]


def _ed_source(ctx: CheckContext, p: _Pipeline, example: Example, side: str = "right") -> None:
    """The pipeline's batch from ``example``: ``b`` samples of random source ids of length ``s``, padded
    on ``side`` to their ``src_lengths``; the memory of the previous example is forgotten."""
    p.b, p.s = int(example["b"]), int(example["s"])
    p.src = _ids(ctx, p.cfg, p.b, p.s)
    p.src_keep = batch_keep(ctx, _lengths(example, "src_lengths"), p.s, side)
    p.memory = None


def _schedule(chunks: list[int]) -> list[tuple[int, int]]:
    """(start, stop) of each chunk of a cache schedule."""
    bounds = [0]
    for c in chunks:
        bounds.append(bounds[-1] + int(c))
    return list(itertools.pairwise(bounds))


def _ed_shape(ctx: CheckContext) -> None:
    p = _Pipeline(ctx, ED)

    def prop(example: Example) -> None:
        _ed_source(ctx, p, example)
        n = int(example["n"])
        ids = _ids(ctx, p.cfg, p.b, n)
        ctx.expect_finite(f"logits (no padding, s={p.s})", p.full(ids))
        keep = keep_from_lengths(ctx, _lengths(example, "tgt_lengths"), n, "right")
        y = p.full(_with_pads(ctx, p.cfg, ids, keep, random=False), keep)
        ctx.expect_finite(f"logits at real positions (s={p.s})", y[keep])
        cache = p.new_cache()
        for c in example["chunks"]:
            ctx.expect_finite(f"step logits (chunk of {c})", p.step(_ids(ctx, p.cfg, p.b, int(c)), cache))

    # target lengths 1 and 4 (unpadded and padded), steps of 2 and 1; then batch, source and target
    # lengths, padding and step schedules drawn by hypothesis
    fixed = [
        {"b": 2, "s": 5, "n": n, "src_lengths": [5, 3], "tgt_lengths": [n, 1], "chunks": [2, 1]}
        for n in (1, 4)
    ]
    search(ctx, prop, fixed=fixed, strategy=seq2seq_example(schedule=True), examples=ctx.model_examples)


def _ed_batch(ctx: CheckContext) -> None:
    p = _Pipeline(ctx, ED)

    def prop(example: Example) -> None:
        _ed_source(ctx, p, example)
        b, n, s = p.b, int(example["n"]), p.s
        keep = keep_from_lengths(ctx, _lengths(example, "tgt_lengths"), n, "right")
        ids = _with_pads(ctx, p.cfg, _ids(ctx, p.cfg, b, n), keep, random=False)
        together = p.full(ids, keep)
        src, src_keep = p.src, p.src_keep
        for i in range(b):
            p.src, p.src_keep = src[i : i + 1], src_keep[i : i + 1]
            alone = p.full(ids[i : i + 1], keep[i : i + 1])
            same_rows(ctx, f"sample {i} alone vs in the batch", alone[0], together[i], keep[i])
        # the probe sample kept, the others' tokens, sources and lengths changed
        probe = min(int(example.get("probe", 0)), b - 1)
        other_tgt = example.get("other_tgt_lengths") or torch.randint(1, n + 1, (b,), generator=ctx.generator)
        other_src = example.get("other_src_lengths") or torch.randint(1, s + 1, (b,), generator=ctx.generator)
        other_tgt, other_src = [int(x) for x in other_tgt], [int(x) for x in other_src]
        other_tgt[probe], other_src[probe] = int(keep[probe].sum()), int(src_keep[probe].sum())
        others = keep_from_lengths(ctx, other_tgt, n, "right")
        ids2 = _with_pads(ctx, p.cfg, _ids(ctx, p.cfg, b, n), others, random=False)
        ids2[probe] = ids[probe]
        p.src = _ids(ctx, p.cfg, b, s)
        p.src[probe] = src[probe]
        p.src_keep = keep_from_lengths(ctx, other_src, s, "right")
        changed = p.full(ids2, others)
        what = f"sample {probe} after changing the other samples"
        same_rows(ctx, what, changed[probe], together[probe], keep[probe])

    # the fixed batch of three (target lengths 3, 5, 1; source lengths 2, 5, 1), then batches drawn by
    # hypothesis (a failure shrinks to the smallest batch and the least padding that show it)
    fixed = [
        {
            "b": 3,
            "s": 5,
            "n": 5,
            "src_lengths": [2, 5, 1],
            "tgt_lengths": [3, 5, 1],
            "probe": 0,
            "other_src_lengths": [2, 1, 4],
            "other_tgt_lengths": [3, 1, 5],
        }
    ]
    drawn = seq2seq_example(min_batch=2, max_batch=4, extras={"probe": st.integers(0, 3)})
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


def _ed_determinism(ctx: CheckContext) -> None:
    p = _Pipeline(ctx, ED, dropout=0.1)

    def prop(example: Example) -> None:
        _ed_source(ctx, p, example)
        n = int(example["n"])
        keep = keep_from_lengths(ctx, _lengths(example, "tgt_lengths"), n, "right")
        ids = _with_pads(ctx, p.cfg, _ids(ctx, p.cfg, p.b, n), keep, random=False)
        first = p.full(ids, keep)
        for _ in range(2):
            what = "a second call on the same input (config dropout 0.1, eval)"
            same_rows(ctx, what, p.full(ids, keep), first, keep)

    fixed = [{"b": 2, "s": 5, "n": 5, "src_lengths": [5, 3], "tgt_lengths": [5, 2]}]
    search(ctx, prop, fixed=fixed, strategy=seq2seq_example(), examples=ctx.model_examples)


def _ed_cache_vs_recompute(ctx: CheckContext) -> None:
    p = _Pipeline(ctx, ED)

    def prop(example: Example) -> None:
        _ed_source(ctx, p, example)
        chunks = [int(c) for c in example["chunks"]]
        ids = _ids(ctx, p.cfg, p.b, sum(chunks))
        cache = p.new_cache()

        def steps() -> Iterator[Step]:
            for start, stop in _schedule(chunks):
                stepped = p.step(ids[:, start:stop], cache)
                recomputed = p.full(ids[:, :stop])[:, start:stop]
                what = (
                    f"cached step at positions {start}..{stop - 1} (warm cache of {start}) vs recomputing "
                    f"the prefix (schedule {chunks})"
                )
                yield f"{start}..{stop - 1}", what, stepped, recomputed, None

        run_steps(StepErrors("cached step vs recomputing the prefix"), steps(), partial(same_rows, ctx))

    # token by token against a padded source, then batches, sources and cache schedules (prefill chunks,
    # single steps, chunks on a warm cache) drawn by hypothesis
    fixed = [{"b": 2, "s": 5, "n": SEQ, "src_lengths": [5, 3], "chunks": [1] * SEQ}]
    search(ctx, prop, fixed=fixed, strategy=seq2seq_example(schedule=True), examples=ctx.model_examples)


def _ed_cache_with_padding(ctx: CheckContext) -> None:
    """Padded decoder prompts (``n`` positions, real lengths ``tgt_lengths``, padded on ``side``), then
    ``generated`` real tokens, decoded on the cache in the example's schedule with each chunk's pad mask;
    real positions must equal the teacher-forced decode on the same padded ids."""
    p = _Pipeline(ctx, ED)
    argument = PAD_ARGUMENT[ED]
    if argument not in inspect.signature(p.handle.step).parameters:
        raise NotApplicable(
            f"target {ctx.adapter.name!r}: its encoder-decoder handle's step() takes no {argument}, so "
            "padded prompts cannot be decoded on its cache"
        )

    def prop(example: Example) -> None:
        side = str(example["side"])
        _ed_source(ctx, p, example)
        b, prompt, generated = p.b, int(example["n"]), int(example["generated"])
        n = prompt + generated
        prompt_keep = batch_keep(ctx, _lengths(example, "tgt_lengths"), prompt, side)
        keep = torch.cat([prompt_keep, torch.ones(b, generated, dtype=torch.bool, device=ctx.device)], 1)
        ids = _with_pads(ctx, p.cfg, _ids(ctx, p.cfg, b, n), keep, random=True)
        full = p.full(ids, keep)
        cache = ctx.call(p.handle.new_cache, b)
        chunks = [int(c) for c in example["chunks"]]

        def steps() -> Iterator[Step]:
            for start, stop in _schedule(chunks):
                chunk_keep = keep[:, start:stop]
                ctx.record(ids=ids, pad_mask=keep, chunk=[start, stop])
                y = _padded_step(ctx, p, ids[:, start:stop], cache, ctx.to_target_mask(chunk_keep))
                y = expect_tensor(
                    ctx, f"step logits (chunk of {stop - start})", y, (b, stop - start, p.cfg.vocab_size)
                )
                what = (
                    f"{side}-padded prompt: cached step at positions {start}..{stop - 1} vs the full forward "
                    f"(real positions, schedule {chunks})"
                )
                yield f"{start}..{stop - 1}", what, y, full[:, start:stop], chunk_keep

        trace = StepErrors(f"{side}-padded prompt: cached steps vs the full forward (real positions)")
        run_steps(trace, steps(), partial(same_rows, ctx))

    # each side: the prompt as one chunk, then token by token; then sides (mixed too), lengths and
    # schedules (the padded prompt split into chunks on a warm cache) drawn by hypothesis
    fixed = [
        {
            "b": 3,
            "s": 5,
            "n": 5,
            "generated": 3,
            "side": side,
            "src_lengths": [1, 5, 4],
            "tgt_lengths": [1, 5, 3],
            "chunks": [5, 1, 1, 1],
        }
        for side in SIDES
    ]
    drawn = seq2seq_example(max_tgt=5, sides=SEQ2SEQ_SIDES, extras={"generated": st.integers(0, 3)}).flatmap(
        lambda e: cache_schedule(e["n"] + e["generated"]).map(lambda chunks: {**e, "chunks": chunks})
    )
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


def _ed_teacher_forcing(ctx: CheckContext) -> None:
    """Teacher forcing on drawn sources and target lengths (``_expect_teacher_forced``)."""
    p = _Pipeline(ctx, ED)

    def prop(example: Example) -> None:
        _ed_source(ctx, p, example)
        _expect_teacher_forced(ctx, p, _ids(ctx, p.cfg, p.b, int(example["n"])))

    fixed = [{"b": 2, "s": 5, "n": SEQ, "src_lengths": [5, 3]}]
    search(ctx, prop, fixed=fixed, strategy=seq2seq_example(), examples=ctx.model_examples)


def _ed_reference(ctx: CheckContext) -> None:
    require_weights(ctx)
    p = _Pipeline(ctx, ED)
    oracle, same = oracle_copies(ctx, p.module)

    def prop(example: Example) -> None:
        side = str(example["side"])
        _ed_source(ctx, p, example, side)
        n = int(example["n"])
        keep = batch_keep(ctx, _lengths(example, "tgt_lengths"), n, side)
        ids = _with_pads(ctx, p.cfg, _ids(ctx, p.cfg, p.b, n), keep, random=False)
        args = (p.src, ids, p.src_keep, keep)
        y = p.full(ids, keep)
        want = run_oracle(oracle, *args)
        base = run_oracle(same, *args)
        ctx.compare(f"{side}-padded batch: logits vs reference", y[keep], want[keep], base[keep])

    # each side (lengths 1..n in one batch), then sides (mixed too), sizes and lengths drawn by hypothesis
    fixed = [
        {"b": 3, "s": 5, "n": 6, "side": side, "src_lengths": [1, 5, 3], "tgt_lengths": [1, 6, 4]}
        for side in SIDES
    ]
    drawn = seq2seq_example(sides=SEQ2SEQ_SIDES)
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


# One literal @check per (handle kind, property), so spec/links.py can read the claim IDs statically.


@check(
    "lm.shape",
    claims=("output.projection",),
    needs=(LM,),
    depends_on=("mha.differential", "layernorm.differential", "ffn.differential"),
    kind="structural",
)
def lm_shape(ctx: CheckContext) -> None:
    """decoder-only LM: logits [b, t, vocab] in the working dtype, finite at real positions, for length 1,
    a padded batch and steps of 2 and 1 tokens, then drawn batches, lengths, padding and steps.
    """
    _lm_shape(ctx)


@check(
    "lm.padding-invariance",
    claims=("mask.padding.invariance", "mask.padding.pad-value-arbitrary"),
    needs=(LM,),
    depends_on=("lm.shape",),
    kind="metamorphic",
)
def lm_padding_invariance(ctx: CheckContext) -> None:
    """decoder-only LM: random ids under the padding (left and right, lengths 1..n) change no logit at a
    real position.
    """
    _padding(ctx, LM)


@check(
    "lm.batch-independence",
    claims=("batch.independence",),
    needs=(LM,),
    depends_on=("lm.shape",),
    kind="metamorphic",
)
def lm_batch_independence(ctx: CheckContext) -> None:
    """decoder-only LM: each sample's logits equal its logits alone and ignore the other samples' tokens
    and lengths (batch, lengths and padding side drawn).
    """
    _lm_batch(ctx)


@check(
    "lm.causality",
    claims=("mask.causal.future-blind",),
    needs=(LM,),
    depends_on=("lm.shape",),
    kind="metamorphic",
)
def lm_causality(ctx: CheckContext) -> None:
    """decoder-only LM: changing tokens at positions >= c leaves logits before c unchanged."""
    _causality(ctx, LM)


@check(
    "lm.determinism",
    claims=("determinism.eval",),
    needs=(LM,),
    depends_on=("lm.shape",),
    kind="metamorphic",
)
def lm_determinism(ctx: CheckContext) -> None:
    """decoder-only LM: built with dropout 0.1 and used for inference, repeated calls give the same logits
    (dropout off), on drawn padded batches.
    """
    _lm_determinism(ctx)


@check(
    "lm.cache-equals-recompute",
    claims=("kvcache.equals-recompute",),
    needs=(LM,),
    depends_on=("lm.shape",),
    kind="metamorphic",
)
def lm_cache_equals_recompute(ctx: CheckContext) -> None:
    """decoder-only LM: each cached step (token by token, then drawn cache schedules: prefill chunks,
    single steps, chunks on a warm cache) gives the logits of recomputing the whole prefix."""
    _lm_cache_vs_recompute(ctx)


@check(
    "lm.cache-with-padding",
    claims=("kvcache.equals-recompute", "mask.padding.invariance"),
    needs=(LM,),
    depends_on=("lm.shape", "lm.cache-equals-recompute"),
    kind="metamorphic",
)
def lm_cache_with_padding(ctx: CheckContext) -> None:
    """decoder-only LM: left- and right-padded prompts (lengths 1..n, random pad ids) decoded on the cache
    with step(ids_chunk, cache, pad_mask_chunk) in a schedule of chunks (one prefill then single tokens;
    drawn: prefill chunks, padded chunks on a warm cache, chunks across the prompt's end): the logits at
    real positions equal the full forward on the same padded ids. Not applicable when the handle's
    step() takes no pad_mask_chunk or raises NotImplementedError for one.
    """
    _lm_cache_with_padding(ctx)


@check(
    "lm.teacher-forcing",
    claims=("training.parallel-equals-sequential",),
    needs=(LM,),
    depends_on=("lm.shape",),
    kind="metamorphic",
)
def lm_teacher_forcing(ctx: CheckContext) -> None:
    """decoder-only LM: one teacher-forced pass equals, at every position t, the last logits of the model
    run alone on the prefix ids[:, :t+1] (no cache; batch and length drawn)."""
    _lm_teacher_forcing(ctx)


@check(
    "lm.chunked-prefill",
    claims=("kvcache.chunked-prefill", "mask.causal.inference-noop"),
    needs=(LM,),
    depends_on=("lm.shape", "lm.cache-equals-recompute"),
    kind="metamorphic",
)
def lm_chunked_prefill(ctx: CheckContext) -> None:
    """decoder-only LM: chunks of 3, 2, 1, 2 tokens (prefill, then on a warm cache) give the whole-sequence
    logits.
    """
    _chunked(ctx, LM)


@check(
    "lm.reference",
    claims=("output.projection", "embedding.plus-positional"),
    needs=(LM,),
    depends_on=("lm.shape",),
    kind="differential",
)
def lm_reference(ctx: CheckContext) -> None:
    """decoder-only LM: same canonical weights, padded batches (batch, lengths, side drawn): logits at real
    positions match the float64 reference.
    """
    _lm_reference(ctx)


# --------------------------------------------------------------------------------------------
# decoder-only LM properties, drawn by the search driver (conformance/search.py): each check's former
# fixed inputs are its ``fixed`` examples, then ``ctx.model_examples`` drawn ones (batch, lengths,
# padding side, cache schedules); the model is built once, outside the property
# --------------------------------------------------------------------------------------------


def _lm_padded(ctx: CheckContext, p: _Pipeline, example: Example) -> tuple[Tensor, Tensor]:
    """(ids with pad_id at the pads, keep) of an ``lm_batch_example``."""
    b, n = int(example["b"]), int(example["n"])
    keep = batch_keep(ctx, [int(v) for v in example["lengths"]], n, example["side"])
    return _with_pads(ctx, p.cfg, _ids(ctx, p.cfg, b, n), keep, random=False), keep


def _lm_shape(ctx: CheckContext) -> None:
    p = _Pipeline(ctx, LM)

    def prop(example: Example) -> None:
        b, n, side, lengths = int(example["b"]), int(example["n"]), example["side"], example["lengths"]
        ids = _ids(ctx, p.cfg, b, n)
        ctx.expect_finite(f"logits (no padding, {b}x{n})", p.full(ids))
        keep = batch_keep(ctx, [int(v) for v in lengths], n, side)
        y = p.full(_with_pads(ctx, p.cfg, ids, keep, random=False), keep)
        ctx.expect_finite(f"logits at real positions ({side}-padded, lengths {lengths})", y[keep])
        cache = ctx.call(p.handle.new_cache, b)
        for c in example["steps"]:
            chunk = _ids(ctx, p.cfg, b, int(c))
            ctx.expect_finite(f"step logits (chunk of {c})", lm_step(ctx, p.handle, p.cfg, chunk, cache))

    # length 1 and a padded batch, steps of 2 and 1 tokens; then batch, lengths, padding and steps drawn
    fixed = [{"b": 2, "n": n, "side": "right", "lengths": [n, 1], "steps": [2, 1]} for n in (1, 4)]
    steps = st.integers(1, 4).flatmap(cache_schedule)
    drawn = lm_batch_example(extras={"steps": steps})
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


def _lm_batch(ctx: CheckContext) -> None:
    p = _Pipeline(ctx, LM)

    def prop(example: Example) -> None:
        b, n, side = int(example["b"]), int(example["n"]), example["side"]
        ids, keep = _lm_padded(ctx, p, example)
        together = p.full(ids, keep)
        for i in range(b):
            alone = p.full(ids[i : i + 1], keep[i : i + 1])
            same_rows(ctx, f"sample {i} alone vs in the batch", alone[0], together[i], keep[i])
        if b == 1:
            return
        # sample 0 as it was, the other samples' tokens and lengths changed
        others = batch_keep(ctx, [int(example["lengths"][0]), *example["others_lengths"][1:]], n, side)
        ids2 = _with_pads(ctx, p.cfg, _ids(ctx, p.cfg, b, n), others, random=False)
        ids2[0] = ids[0]
        changed = p.full(ids2, others)
        same_rows(ctx, "sample 0 after changing the other samples", changed[0], together[0], keep[0])

    fixed = [{"b": 3, "n": 5, "side": "right", "lengths": [3, 5, 1], "others_lengths": [3, 1, 5]}]
    drawn = lm_batch_example(batch=(2, 3), others=True)
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


def _lm_determinism(ctx: CheckContext) -> None:
    p = _Pipeline(ctx, LM, dropout=0.1)

    def prop(example: Example) -> None:
        ids, keep = _lm_padded(ctx, p, example)
        first = p.full(ids, keep)
        for _ in range(2):
            same_rows(
                ctx,
                "a second call on the same input (config dropout 0.1, eval)",
                p.full(ids, keep),
                first,
                keep,
            )

    fixed = [{"b": 2, "n": 5, "side": "right", "lengths": [5, 2]}]
    search(ctx, prop, fixed=fixed, strategy=lm_batch_example(), examples=ctx.model_examples)


def _lm_cache_vs_recompute(ctx: CheckContext) -> None:
    p = _Pipeline(ctx, LM)

    def prop(example: Example) -> None:
        b, chunks = int(example["b"]), [int(c) for c in example["chunks"]]
        ids = _ids(ctx, p.cfg, b, sum(chunks))
        cache = ctx.call(p.handle.new_cache, b)

        def steps() -> Iterator[Step]:
            start = 0
            for c in chunks:
                stop = start + c
                stepped = lm_step(ctx, p.handle, p.cfg, ids[:, start:stop], cache)
                recomputed = p.full(ids[:, :stop])[:, start:stop]
                ctx.record(ids=ids, chunk=[start, stop])
                where = f"position {start}" if c == 1 else f"positions {start}..{stop - 1}"
                label = str(start) if c == 1 else f"{start}..{stop - 1}"
                what = f"cached step at {where} vs recomputing the prefix (schedule {chunks})"
                yield label, what, stepped, recomputed, None
                start = stop

        run_steps(StepErrors("cached step vs recomputing the prefix"), steps(), partial(same_rows, ctx))

    # token by token, then batch, length and cache schedule drawn (a failure shrinks to the simplest
    # schedule that shows it)
    fixed = [{"b": 2, "n": SEQ, "chunks": [1] * SEQ}]
    search(ctx, prop, fixed=fixed, strategy=schedule_example(), examples=ctx.model_examples)


def _lm_teacher_forcing(ctx: CheckContext) -> None:
    """Teacher forcing on drawn batch sizes and lengths (``_expect_teacher_forced``)."""
    p = _Pipeline(ctx, LM)

    def prop(example: Example) -> None:
        _expect_teacher_forced(ctx, p, _ids(ctx, p.cfg, int(example["b"]), int(example["n"])))

    fixed = [{"b": 2, "n": SEQ}]
    search(ctx, prop, fixed=fixed, strategy=sizes_example(b=(1, 3), n=(1, SEQ)), examples=ctx.model_examples)


#: The fixed cases of lm.cache-with-padding: each side's padded prompt (lengths 1, 5 and 3) prefilled
#: in one chunk then decoded token by token; then the left-padded prompt prefilled in chunks on a warm
#: cache (a first chunk of pads only for the short samples, pads in the second chunk too).
CACHE_WITH_PADDING: tuple[Example, ...] = (
    *({"side": side, "chunks": [5, 1, 1, 1]} for side in SIDES),
    {"side": "left", "chunks": [2, 3, 1, 2]},
)


def _lm_cache_with_padding(ctx: CheckContext) -> None:
    """Padded prompts decoded on the cache in a schedule of chunks, each with its pad mask
    (``step(ids_chunk, cache, pad_mask_chunk)``); real positions must equal the full forward on the same
    padded ids."""
    p = _Pipeline(ctx, LM)
    if "pad_mask_chunk" not in inspect.signature(p.handle.step).parameters:
        raise NotApplicable(
            f"target {ctx.adapter.name!r}: its LM handle's step() takes no pad_mask_chunk, so padded "
            "prompts cannot be decoded on its cache"
        )

    def prop(example: Example) -> None:
        b, prompt, generated = int(example["b"]), int(example["prompt"]), int(example["generated"])
        side, lengths = example["side"], [int(v) for v in example["lengths"]]
        chunks = [int(c) for c in example["chunks"]]
        n = prompt + generated
        prompt_keep = batch_keep(ctx, lengths, prompt, side)
        keep = torch.cat([prompt_keep, torch.ones(b, generated, dtype=torch.bool, device=ctx.device)], 1)
        ids = _with_pads(ctx, p.cfg, _ids(ctx, p.cfg, b, n), keep, random=True)
        full = p.full(ids, keep)
        cache = ctx.call(p.handle.new_cache, b)
        setting = f"{side}-padded prompt of {prompt} (lengths {lengths}) + {generated} tokens"
        setting += f", schedule {chunks}"

        def steps() -> Iterator[Step]:
            start = 0
            for c in chunks:
                stop = start + c
                chunk_keep = keep[:, start:stop]
                ctx.record(ids=ids, pad_mask=keep, chunk=[start, stop])
                y = _padded_step(ctx, p, ids[:, start:stop], cache, ctx.to_target_mask(chunk_keep))
                y = expect_tensor(ctx, f"step logits (chunk of {c})", y, (b, c, p.cfg.vocab_size))
                what = (
                    f"{setting}: cached step at positions {start}..{stop - 1} (warm cache of {start}) vs "
                    "the full forward (real positions)"
                )
                yield f"{start}..{stop - 1}", what, y, full[:, start:stop], chunk_keep
                start = stop

        trace = StepErrors(f"{setting}: cached steps vs the full forward (real positions)")
        run_steps(trace, steps(), partial(same_rows, ctx))

    # the fixed prompts, then batch, prompt, padding, lengths and schedule drawn together (a failure
    # shrinks to the smallest batch, prompt and schedule that show it)
    sizes = {"b": 3, "prompt": 5, "generated": 3, "lengths": [1, 5, 3]}
    fixed = [{**sizes, **case} for case in CACHE_WITH_PADDING]
    search(ctx, prop, fixed=fixed, strategy=padded_cache_example(), examples=ctx.model_examples)


def _lm_reference(ctx: CheckContext) -> None:
    require_weights(ctx)
    p = _Pipeline(ctx, LM)
    oracle, same = oracle_copies(ctx, p.module)

    def prop(example: Example) -> None:
        ids, keep = _lm_padded(ctx, p, example)
        y = p.full(ids, keep)
        want = run_oracle(oracle, ids, keep)
        base = run_oracle(same, ids, keep)
        side = example["side"]
        ctx.compare(f"{side}-padded batch: logits vs reference", y[keep], want[keep], base[keep])

    fixed = [{"b": 3, "n": 6, "side": side, "lengths": [1, 6, 4]} for side in SIDES]
    search(ctx, prop, fixed=fixed, strategy=lm_batch_example(), examples=ctx.model_examples)


@check(
    "encdec.shape",
    claims=("output.projection", "encdec.output-length-independent"),
    needs=(ED,),
    depends_on=("encoder_layer.reference", "decoder_layer.reference"),
    kind="structural",
)
def encdec_shape(ctx: CheckContext) -> None:
    """encoder-decoder: logits [b, t, vocab] in the working dtype, finite at real positions, for every
    source length s: target lengths 1 and 4, unpadded and padded, then steps of 2 and 1 tokens; then
    batches, source and target lengths, padding and step schedules drawn by hypothesis.
    """
    _ed_shape(ctx)


@check(
    "encdec.padding-invariance",
    claims=("mask.padding.invariance", "mask.padding.pad-value-arbitrary"),
    needs=(ED,),
    depends_on=("encdec.shape",),
    kind="metamorphic",
)
def encdec_padding_invariance(ctx: CheckContext) -> None:
    """encoder-decoder: random ids under the padding (left and right, lengths 1..n) change no logit at a
    real position.
    """
    _padding(ctx, ED)


@check(
    "encdec.batch-independence",
    claims=("batch.independence",),
    needs=(ED,),
    depends_on=("encdec.shape",),
    kind="metamorphic",
)
def encdec_batch_independence(ctx: CheckContext) -> None:
    """encoder-decoder: each sample's logits equal its logits alone and ignore the other samples' tokens,
    sources and lengths (a batch of three, then batches of 2..4 drawn by hypothesis).
    """
    _ed_batch(ctx)


@check(
    "encdec.causality",
    claims=("mask.causal.future-blind",),
    needs=(ED,),
    depends_on=("encdec.shape",),
    kind="metamorphic",
)
def encdec_causality(ctx: CheckContext) -> None:
    """encoder-decoder: changing tokens at positions >= c leaves logits before c unchanged."""
    _causality(ctx, ED)


@check(
    "encdec.determinism",
    claims=("determinism.eval",),
    needs=(ED,),
    depends_on=("encdec.shape",),
    kind="metamorphic",
)
def encdec_determinism(ctx: CheckContext) -> None:
    """encoder-decoder: built with dropout 0.1 and used for inference, repeated calls give the same logits
    (dropout off), on a fixed padded batch and on batches drawn by hypothesis.
    """
    _ed_determinism(ctx)


@check(
    "encdec.cache-equals-recompute",
    claims=("kvcache.equals-recompute",),
    needs=(ED,),
    depends_on=("encdec.shape",),
    kind="metamorphic",
)
def encdec_cache_equals_recompute(ctx: CheckContext) -> None:
    """encoder-decoder: each cached step gives the logits of recomputing the whole prefix: token by token
    against a padded source, then cache schedules drawn by hypothesis (prefill chunks, single steps,
    chunks on a warm cache)."""
    _ed_cache_vs_recompute(ctx)


@check(
    "encdec.cache-with-padding",
    claims=("encdec.cache-padded-prompts", "kvcache.equals-recompute", "mask.padding.invariance"),
    needs=(ED,),
    depends_on=("encdec.shape", "encdec.cache-equals-recompute"),
    kind="metamorphic",
)
def encdec_cache_with_padding(ctx: CheckContext) -> None:
    """encoder-decoder: left- and right-padded decoder prompts (lengths 1..n, random pad ids) against a
    padded source, prefilled with step(tgt_chunk, memory, cache, src_pad, tgt_pad_chunk), then decoded
    token by token: the logits at real positions equal the teacher-forced decode of the same padded
    ids. Then sides (each sample its own side too), lengths and cache schedules drawn by hypothesis (the
    padded prompt split into chunks on a warm cache). Not applicable when the handle's step() takes no
    tgt_pad_chunk or raises NotImplementedError for one.
    """
    _ed_cache_with_padding(ctx)


@check(
    "encdec.teacher-forcing",
    claims=("training.parallel-equals-sequential", "encdec.teacher-forcing"),
    needs=(ED,),
    depends_on=("encdec.shape",),
    kind="metamorphic",
)
def encdec_teacher_forcing(ctx: CheckContext) -> None:
    """encoder-decoder: one teacher-forced pass equals, at every position t, the last logits of decoding
    the prefix tgt[:, :t+1] alone (no cache); 8 positions, then batches and lengths drawn by hypothesis."""
    _ed_teacher_forcing(ctx)


@check(
    "encdec.chunked-prefill",
    claims=("kvcache.chunked-prefill", "mask.causal.inference-noop"),
    needs=(ED,),
    depends_on=("encdec.shape", "encdec.cache-equals-recompute"),
    kind="metamorphic",
)
def encdec_chunked_prefill(ctx: CheckContext) -> None:
    """encoder-decoder: chunks of 3, 2, 1, 2 tokens (prefill, then on a warm cache) give the whole-sequence
    logits.
    """
    _chunked(ctx, ED)


@check(
    "encdec.reference",
    claims=("output.projection", "embedding.plus-positional"),
    needs=(ED,),
    depends_on=("encdec.shape",),
    kind="differential",
)
def encdec_reference(ctx: CheckContext) -> None:
    """encoder-decoder: same canonical weights, padded batches: logits at real positions match the float64
    reference (left and right padding, then sides, sizes and lengths drawn by hypothesis).
    """
    _ed_reference(ctx)


@check(
    "encdec.memory-permutation",
    claims=("attention.cross.memory-permutation-invariant",),
    needs=(ED,),
    depends_on=("encdec.shape",),
    kind="metamorphic",
)
def encdec_memory_permutation(ctx: CheckContext) -> None:
    """encoder-decoder: decoding against the memory with its positions permuted (and the source padding
    permuted alike) gives the same logits; batches, lengths and permutations drawn by hypothesis (a
    failure shrinks towards a rotation by one)."""
    p = _Pipeline(ctx, ED)

    def prop(example: Example) -> None:
        _ed_source(ctx, p, example)
        tgt = _ids(ctx, p.cfg, p.b, int(example["n"]))
        memory, base = ed_decode(ctx, p.handle, p.cfg, p.src, tgt, p.src_keep, None)
        perm = torch.tensor([int(i) for i in example["perm"]], dtype=torch.int64, device=ctx.device)
        keep = p.src_keep[:, perm]
        y = ctx.call(p.handle.decode, tgt, memory[:, perm], ctx.to_target_mask(keep), None)
        y = expect_tensor(ctx, "decoder logits", y, (*tgt.shape, p.cfg.vocab_size))
        same_rows(ctx, f"logits with memory permuted by {perm.tolist()}", y, base, None)

    fixed = [{"b": 2, "s": 5, "n": 4, "src_lengths": [5, 3], "perm": [3, 0, 4, 1, 2]}]
    drawn = seq2seq_example(min_src=2, permutation=True)
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


class ModuleCalls:
    """The torch modules whose forward runs in the target while the context is open.

    A global forward hook (``register_module_forward_hook``) sees every ``nn.Module`` call, whatever the
    target's structure. Isolated, the hook runs in the target's worker (``TargetSession.trace_modules``);
    in-process, it runs here and ignores calls from other threads. ``modules`` maps each module's
    identity to its type name.
    """

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.modules: dict[int, str] = {}
        self._thread = threading.get_ident()
        self._handle: Any = None

    def _hook(self, module: nn.Module, args: Any, result: Any) -> None:
        if threading.get_ident() == self._thread:
            self.modules[id(module)] = type(module).__name__

    def __enter__(self) -> "ModuleCalls":
        if self.ctx.session is not None:
            self.ctx.session.trace_modules(True)
        else:
            self._handle = torch.nn.modules.module.register_module_forward_hook(self._hook)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.ctx.session is not None:
            if kind is None:
                self.modules = self.ctx.session.trace_modules(False)
        else:
            self._handle.remove()

    def ids(self) -> set[int]:
        """Identities of the modules seen."""
        return set(self.modules)


@check(
    "encdec.encodes-once",
    claims=("kvcache.cross-computed-once",),
    needs=(ED,),
    depends_on=("encdec.shape",),
    kind="structural",
)
def encdec_encodes_once(ctx: CheckContext) -> None:
    """encoder-decoder: a generation loop (encode once, then token-by-token steps on the cache) runs the
    encoder only in encode(): no torch module that encode() runs and decode() does not may run in step().
    Token by token (8 steps), then batches, sources and step schedules (chunks on a warm cache) drawn by
    hypothesis.
    """
    p = _Pipeline(ctx, ED)

    def prop(example: Example) -> None:
        _ed_source(ctx, p, example)
        chunks = [int(c) for c in example["chunks"]]
        tgt = _ids(ctx, p.cfg, p.b, sum(chunks))
        src_mask = ctx.to_target_mask(p.src_keep)
        ctx.record(src=p.src, src_pad=p.src_keep, tgt=tgt)
        with ModuleCalls(ctx) as encoding:
            memory = ctx.call(p.handle.encode, p.src, src_mask)
        memory = expect_tensor(ctx, "memory", memory, (*p.src.shape, p.cfg.d_model))
        with ModuleCalls(ctx) as decoding:
            ctx.call(p.handle.decode, tgt[:, :1], memory, src_mask, None)
        encoder_only = encoding.ids() - decoding.ids()
        if not encoder_only:
            raise NotApplicable(
                f"target {ctx.adapter.name!r}: no torch module runs in encode() but not in decode(), so "
                "the encoder cannot be told apart by its module calls"
            )
        cache = ctx.call(p.handle.new_cache, p.b)
        for start, stop in _schedule(chunks):
            with ModuleCalls(ctx) as stepping:
                ed_step(ctx, p.handle, p.cfg, tgt[:, start:stop], memory, cache, p.src_keep)
            rerun = sorted({encoding.modules[i] for i in encoder_only & stepping.ids()})
            if rerun:
                ctx.fail(
                    FailureKind.PROPERTY,
                    f"step at positions {start}..{stop - 1} ran {len(encoder_only & stepping.ids())} "
                    f"module(s) that only encode() runs ({', '.join(rerun)}): generation re-encodes the "
                    "source at every step instead of reusing the memory",
                )

    fixed = [{"b": 2, "s": 5, "n": SEQ, "src_lengths": [5, 3], "chunks": [1] * SEQ}]
    search(ctx, prop, fixed=fixed, strategy=seq2seq_example(schedule=True), examples=ctx.model_examples)
