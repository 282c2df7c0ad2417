"""Hypothesis strategies for the canonical inputs of the conformance checks.

Every strategy draws an *example*: a small JSON-able dict of sizes, flags and a ``data`` seed (the
tensor contents are drawn from the check's generator reseeded with it, ``conformance/search.py``), so
an example is replayed exactly from its JSON and hypothesis shrinks sizes and contents together:

- attention sizes (``attention_example``): batch, heads, ``nq != nk`` both ways, length 1 (0 where a
  check allows it: ``min_len=0``), non-powers of two, ``dv != d`` where asked; under the ``kernel``
  profile lengths and head widths come from the block-boundary sets below;
- mask layouts (``MASK_SHAPES``): none, ``[nq, nk]``, ``[b, 1, nq, nk]``, ``[b, h, nq, nk]``,
  ``[b, 1, 1, nk]``, each optionally combined with ``is_causal`` (``mask_example``, ``build_keep``);
- padding (``PADDING_SIDES``): left, right, mixed (each sample its own side), whole-sample;
- cache schedules (``cache_schedule``): a prompt of n positions split into prefill chunks, single
  steps, chunks on a warm cache;
- decoder-only LM batches (``lm_batch_example``, ``schedule_example``, ``padded_cache_example``,
  ``shift_example``): batch, length, padding side and per-sample real lengths, a cache schedule, a
  padded prompt decoded on the cache in a drawn schedule, per-sample left shifts;
- padded batches of the layer and model checks (``padded_batch_example``): batch, lengths, each
  sample's real length, the padding side (``BATCH_SIDES``), an empty sample, the other samples'
  lengths, dependent extras (a cut position, a permutation);
- encoder-decoder batches (``seq2seq_example``): batch, source and target lengths, each sample's real
  source and target length, optionally a padding side, a cache schedule and a source permutation;
- temperatures (``invalid_temperatures``): negative (down to -inf and the smallest subnormal), NaN,
  and 0 / -0.0 (greedy or an error per the declared convention);
- dtypes (``dtypes``): among the target's declared ones.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor

from transformer_conformance.reference.masks import causal_mask

#: An example: sizes, flags and the ``data`` seed of its tensor contents (JSON-able).
Example = dict[str, Any]

#: Sequence lengths of the ``kernel`` profile: on and around the usual block sizes (64, 128, 256,
#: 1024), and length 1.
KERNEL_LENGTHS = (1, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1023, 1024, 1025)
#: Odd (num_q, num_k) pairs of the ``kernel`` profile (neither a multiple of a block).
KERNEL_PAIRS = ((113, 203), (203, 113), (1, 129), (129, 1), (65, 257))
#: Head widths of the ``kernel`` profile (powers of two and the odd widths kernels pad).
KERNEL_WIDTHS = (32, 40, 59, 64, 80, 96, 111, 128, 256)
#: Grouped-query ratios (query heads per key/value head) of the ``kernel`` profile.
KERNEL_GQA_RATIOS = (1, 2, 4, 8)
#: Largest num_q * num_k * head width of one drawn kernel-profile case: keeps the CPU run of the
#: attention checks within minutes (CUDA runs the same draws).
KERNEL_BUDGET = 1025 * 1025 * 64

#: Documented mask layouts (canonical boolean, True = may attend).
MASK_SHAPES = ("none", "[nq,nk]", "[b,1,nq,nk]", "[b,h,nq,nk]", "[b,1,1,nk]")
#: Key-padding layouts.
PADDING_SIDES = ("right", "left", "mixed", "whole-sample")
#: Padding sides of a padded batch: every sample right- or left-padded, or "mixed" (even samples
#: right-, odd samples left-padded, in one batch).
BATCH_SIDES = ("right", "left", "mixed")


def data_seeds() -> st.SearchStrategy[int]:
    """The seed of an example's tensor contents (shrinks towards 0)."""
    return st.integers(min_value=0, max_value=2**32 - 1)


def small_sizes(
    *,
    square: bool = False,
    value_width_differs: bool = False,
    min_len: int = 1,
    max_len: int = 9,
    max_batch: int = 3,
    max_heads: int = 3,
    max_width: int = 9,
) -> st.SearchStrategy[Example]:
    """Small attention sizes: b, h in 1..3, lengths in ``min_len..max_len``, widths 1..9."""
    length = st.integers(min_value=min_len, max_value=max_len)

    @st.composite
    def draw(d: st.DrawFn) -> Example:
        b = d(st.integers(1, max_batch))
        h = d(st.integers(1, max_heads))
        nk = d(length)
        nq = nk if square else d(length)
        width = d(st.integers(1, max_width))
        dv = width + d(st.integers(1, 3)) if value_width_differs else width
        return {"b": b, "h": h, "nq": nq, "nk": nk, "d": width, "dv": dv}

    return draw()


def kernel_sizes(*, square: bool = False, value_width_differs: bool = False) -> st.SearchStrategy[Example]:
    """Kernel-profile sizes: lengths from ``KERNEL_LENGTHS`` (or a pair of ``KERNEL_PAIRS``), widths
    from ``KERNEL_WIDTHS``, b and h in 1..2, within ``KERNEL_BUDGET``."""

    @st.composite
    def draw(d: st.DrawFn) -> Example:
        if square or d(st.booleans()):
            nk = d(st.sampled_from(KERNEL_LENGTHS))
            nq = nk if square else d(st.sampled_from(KERNEL_LENGTHS))
        else:
            nq, nk = d(st.sampled_from(KERNEL_PAIRS))
        width = d(st.sampled_from(KERNEL_WIDTHS))
        d_v = width + 8 if value_width_differs else width
        b = d(st.integers(1, 2))
        h = d(st.integers(1, 2))
        if nq * nk * max(width, d_v) > KERNEL_BUDGET:
            b = h = 1
            width = min(width, KERNEL_BUDGET // (nq * nk))
            width = max(w for w in (*KERNEL_WIDTHS, 1, 8, 16) if w <= max(width, 1))
            d_v = width + 8 if value_width_differs else width
        return {"b": b, "h": h, "nq": nq, "nk": nk, "d": width, "dv": d_v}

    return draw()


def attention_example(
    *,
    kernel: bool = False,
    square: bool = False,
    value_width_differs: bool = False,
    min_len: int = 1,
    extras: dict[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[Example]:
    """Attention sizes (small, or the kernel profile's sets), a ``data`` seed and the ``extras``."""
    sizes = (
        kernel_sizes(square=square, value_width_differs=value_width_differs)
        if kernel
        else small_sizes(square=square, value_width_differs=value_width_differs, min_len=min_len)
    )
    rest = st.fixed_dictionaries({"data": data_seeds(), **(extras or {})})
    return st.tuples(sizes, rest).map(lambda pair: {**pair[0], **pair[1]})


def mha_example() -> st.SearchStrategy[Example]:
    """Multi-head attention sizes: h in 1..4 heads of width 2..5 (d_model = h * width), b in 1..4,
    lengths in 2..5, and a ``data`` seed."""

    @st.composite
    def draw(d: st.DrawFn) -> Example:
        h = d(st.integers(1, 4))
        width = d(st.integers(2, 5))
        sizes = {"b": d(st.integers(1, 4)), "nq": d(st.integers(2, 5)), "nk": d(st.integers(2, 5))}
        return {"d_model": h * width, "h": h, **sizes, "data": d(data_seeds())}

    return draw()


def sizes_example(**ranges: tuple[int, int]) -> st.SearchStrategy[Example]:
    """Integer sizes, each in its inclusive ``(low, high)`` range, and a ``data`` seed."""
    fields = {name: st.integers(low, high) for name, (low, high) in ranges.items()}
    return st.fixed_dictionaries({**fields, "data": data_seeds()})


def mask_example() -> dict[str, st.SearchStrategy[Any]]:
    """Extras of a masked call: one documented layout and whether ``is_causal`` is set as well."""
    return {"mask": st.sampled_from(MASK_SHAPES), "is_causal": st.booleans()}


def padding_example() -> dict[str, st.SearchStrategy[Any]]:
    """Extras of a padded call: the padding layout."""
    return {"padding": st.sampled_from(PADDING_SIDES)}


def build_keep(
    generator: torch.Generator, example: Example, device: torch.device | str = "cpu"
) -> Tensor | None:
    """The canonical keep-mask of ``example["mask"]`` in its documented layout (None for "none"),
    about half visible, every query row keeping at least one visible key."""
    layout = example.get("mask", "none")
    b, h, nq, nk = example["b"], example["h"], example["nq"], example["nk"]
    shapes = {
        "[nq,nk]": (nq, nk),
        "[b,1,nq,nk]": (b, 1, nq, nk),
        "[b,h,nq,nk]": (b, h, nq, nk),
        "[b,1,1,nk]": (b, 1, 1, nk),
    }
    if layout == "none":
        return None
    shape = shapes[layout]
    keep = torch.rand(*shape, generator=generator) < 0.5
    anchor = torch.randint(0, nk, (*shape[:-1], 1), generator=generator)
    keep.scatter_(-1, anchor, True)
    return keep.to(device)


def combined_keep(keep: Tensor | None, example: Example, alignment: str) -> Tensor | None:
    """The mask an attention call with ``keep`` and ``example["is_causal"]`` means: their conjunction
    ([b|1, h|1, nq, nk]), the causal part in ``alignment``."""
    if not example.get("is_causal"):
        return keep
    causal = causal_mask(example["nq"], example["nk"], alignment=alignment)  # type: ignore[arg-type]
    causal = causal.to(keep.device) if keep is not None else causal
    return causal if keep is None else keep & causal


def padding_lengths(generator: torch.Generator, example: Example, length: int) -> tuple[list[int], list[str]]:
    """Real lengths and side per sample for ``example["padding"]``: sample 0 full, sample 1 half,
    the rest random; "mixed" alternates sides; "whole-sample" pads sample 1 (or 0) completely."""
    b, layout = example["b"], example.get("padding", "right")
    drawn = torch.randint(1, length + 1, (b,), generator=generator).tolist()
    lengths = [length, *(max(1, length // 2) for _ in range(min(1, b - 1))), *drawn[2:]][:b]
    sides = ["left" if (layout == "left" or (layout == "mixed" and i % 2)) else "right" for i in range(b)]
    if layout == "whole-sample":
        lengths[min(1, b - 1)] = 0
    return lengths, sides


def cache_schedule(length: int) -> st.SearchStrategy[list[int]]:
    """Chunk lengths summing to ``length``: one prefill (shrinks to it), single steps, or prefill
    chunks then steps on the warm cache."""
    if length <= 1:
        return st.just([length])
    cuts = st.sets(st.integers(1, length - 1), max_size=length - 1)
    return cuts.map(lambda c: [b - a for a, b in zip([0, *sorted(c)], [*sorted(c), length])])


def _lengths(d: st.DrawFn, b: int, n: int, first_at_least: int = 1) -> list[int]:
    """Per-sample real lengths in 1..n (sample 0 at least ``first_at_least``); shrink towards 1."""
    first = d(st.integers(min(first_at_least, n), n))
    return [first, *(d(st.integers(1, n)) for _ in range(b - 1))]


def lm_batch_example(
    *,
    batch: tuple[int, int] = (1, 3),
    length: tuple[int, int] = (1, 6),
    others: bool = False,
    first_at_least: int = 1,
    extras: dict[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[Example]:
    """A padded LM batch: ``b``, ``n``, ``side`` (``BATCH_SIDES``: right, left, mixed), ``lengths``
    (per sample, 1..n; sample 0 at least ``first_at_least``), with ``others`` a second set of lengths
    ``others_lengths`` (the batch-independence check's changed batch), the ``extras`` and a ``data``
    seed. Shrinks to one short sample."""

    @st.composite
    def draw(d: st.DrawFn) -> Example:
        b = d(st.integers(*batch))
        n = d(st.integers(*length))
        example: Example = {"b": b, "n": n, "side": d(st.sampled_from(BATCH_SIDES))}
        example["lengths"] = _lengths(d, b, n, first_at_least)
        if others:
            example["others_lengths"] = _lengths(d, b, n)
        example.update({name: d(strategy) for name, strategy in (extras or {}).items()})
        example["data"] = d(data_seeds())
        return example

    return draw()


#: Padding sides of an encoder-decoder batch (the same as a layer batch's).
SEQ2SEQ_SIDES = BATCH_SIDES


def seq2seq_example(
    *,
    min_batch: int = 1,
    max_batch: int = 3,
    min_src: int = 1,
    max_src: int = 6,
    max_tgt: int = 8,
    sides: Sequence[str] = (),
    schedule: bool = False,
    permutation: bool = False,
    extras: dict[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[Example]:
    """An encoder-decoder batch: ``b`` samples, source length ``s``, target length ``n`` (1..``max_tgt``),
    each sample's real source length (``src_lengths``, 1..s) and target length (``tgt_lengths``, 1..n),
    a ``data`` seed and the ``extras``; with ``sides`` a padding ``side`` among them, with ``schedule``
    the cache schedule ``chunks`` of the n target positions (``cache_schedule``), with ``permutation``
    a permutation ``perm`` of the s source positions (never the identity when s > 1: it shrinks to a
    rotation by one). Everything shrinks towards one short sample of full length."""

    @st.composite
    def draw(d: st.DrawFn) -> Example:
        b = d(st.integers(min_batch, max_batch))
        s = d(st.integers(min_src, max_src))
        n = d(st.integers(1, max_tgt))

        def lengths(m: int) -> list[int]:
            # drawn as the padding m - length, so that a failure shrinks towards unpadded samples
            pads: list[int] = d(st.lists(st.integers(0, m - 1), min_size=b, max_size=b))
            return [m - pad for pad in pads]

        example: Example = {"b": b, "s": s, "n": n, "src_lengths": lengths(s), "tgt_lengths": lengths(n)}
        if sides:
            example["side"] = d(st.sampled_from(list(sides)))
        if schedule:
            example["chunks"] = d(cache_schedule(n))
        if permutation:
            perm = d(st.permutations(range(s)))
            if s > 1 and perm == list(range(s)):
                perm = perm[1:] + perm[:1]
            example["perm"] = perm
        for key, strategy in (extras or {}).items():
            example[key] = d(strategy)
        example["data"] = d(data_seeds())
        return example

    return draw()


def schedule_example(
    *, batch: tuple[int, int] = (1, 3), length: tuple[int, int] = (1, 8)
) -> st.SearchStrategy[Example]:
    """``b``, a sequence length ``n`` and a cache schedule ``chunks`` of it (``cache_schedule``), and a
    ``data`` seed. Shrinks to one sample, one token, one prefill."""

    @st.composite
    def draw(d: st.DrawFn) -> Example:
        b = d(st.integers(*batch))
        n = d(st.integers(*length))
        return {"b": b, "n": n, "chunks": d(cache_schedule(n)), "data": d(data_seeds())}

    return draw()


def padded_cache_example(
    *,
    batch: tuple[int, int] = (1, 3),
    prompt: tuple[int, int] = (1, 5),
    generated: tuple[int, int] = (0, 3),
) -> st.SearchStrategy[Example]:
    """A padded prompt decoded on the cache: ``b``, ``prompt`` length, ``side`` (``BATCH_SIDES``), per-sample
    real ``lengths`` of the prompt (1..prompt), ``generated`` real tokens after it, and the cache
    schedule ``chunks`` of all ``prompt + generated`` positions (prefill chunks, single steps, chunks on
    a warm cache that hold padding or straddle the prompt's end), and a ``data`` seed. Shrinks to one
    sample, a one-token prompt, one prefill."""

    @st.composite
    def draw(d: st.DrawFn) -> Example:
        b = d(st.integers(*batch))
        p = d(st.integers(*prompt))
        g = d(st.integers(*generated))
        side = d(st.sampled_from(BATCH_SIDES))
        lengths = _lengths(d, b, p)
        chunks = d(cache_schedule(p + g))
        return {
            "b": b,
            "prompt": p,
            "generated": g,
            "side": side,
            "lengths": lengths,
            "chunks": chunks,
            "data": d(data_seeds()),
        }

    return draw()


def shift_example(
    *, batch: tuple[int, int] = (1, 3), length: tuple[int, int] = (1, 6), max_shift: int = 4
) -> st.SearchStrategy[Example]:
    """``b``, a length ``n`` of real tokens, per-sample left shifts ``pads`` (1..max_shift pads before
    the real tokens; a row shifted less than the most is filled up with right padding), and a ``data``
    seed. Shrinks to one sample of one token shifted by one pad."""

    @st.composite
    def draw(d: st.DrawFn) -> Example:
        b = d(st.integers(*batch))
        n = d(st.integers(*length))
        pads = [d(st.integers(1, max_shift)) for _ in range(b)]
        return {"b": b, "n": n, "pads": pads, "data": d(data_seeds())}

    return draw()


def invalid_temperatures() -> st.SearchStrategy[str]:
    """Temperatures a sampler must reject (``sampling.invalid-temperature``), as their ``repr`` (JSON has
    no NaN or inf; ``float()`` reads them back): negative ones, from -1 (what a failure shrinks to)
    through -inf and the smallest negative subnormal, and NaN; and 0.0 and -0.0, which mean greedy
    decoding (or an error, per the declared convention), never a division by zero. +inf is not among
    them: the claim names negative and NaN temperatures only."""
    negative = st.floats(max_value=-(2.0**-1074), allow_nan=False, allow_infinity=True)
    special = st.sampled_from([float("nan"), 0.0, -0.0, float("-inf"), -1e-6])
    return st.one_of(st.just(-1.0), negative, special).map(repr)


def dtypes(declared: Sequence[torch.dtype]) -> st.SearchStrategy[torch.dtype]:
    """One of the target's declared dtypes."""
    return st.sampled_from(list(declared))


#: An extra field of a drawn example: a strategy, or a function of the sizes drawn so far giving one
#: (a cut position within a drawn length, a permutation of a drawn length).
Extra = st.SearchStrategy[Any] | Callable[[Example], st.SearchStrategy[Any]]


def padded_batch_example(
    *,
    dims: dict[str, tuple[int, int]],
    batch: tuple[int, int] = (1, 4),
    padded: Sequence[str] | None = None,
    sides: Sequence[str] = BATCH_SIDES,
    empty: bool = False,
    others: bool = False,
    extras: Mapping[str, Extra] | None = None,
) -> st.SearchStrategy[Example]:
    """A padded batch of a layer or model check: ``b`` in ``batch``, each length of ``dims`` (name ->
    inclusive range), and for each ``padded`` dim (default: all) the real length of every sample
    (``"<dim>_lens"``, 1 .. the dim's length) and the padding ``side`` (one of ``sides``, the first
    shrinks first; no ``side`` when nothing is padded). ``empty``: one sample has no real token in
    the first padded dim (length 0; b >= 2 then). ``others``: new lengths for samples 1.. of each
    padded dim (``"<dim>_others"``: the other samples' lengths, changed around sample 0 by a
    batch-independence check). Then the ``extras`` (a function of the example so far gives a dependent
    strategy: a cut position, a permutation) and a ``data`` seed. Everything shrinks towards small
    batches, short lengths and the first side."""
    padded = list(dims) if padded is None else list(padded)

    @st.composite
    def draw(d: st.DrawFn) -> Example:
        b = d(st.integers(*batch))
        example: Example = {"b": b}
        for name, (low, high) in dims.items():
            example[name] = d(st.integers(low, high))
        if padded:
            example["side"] = d(st.sampled_from(list(sides)))
        for position, name in enumerate(padded):
            real = st.integers(1, example[name])
            lens = d(st.lists(real, min_size=b, max_size=b))
            if empty and position == 0:
                lens[d(st.integers(0, b - 1))] = 0
            example[f"{name}_lens"] = lens
            if others:
                example[f"{name}_others"] = d(st.lists(real, min_size=b - 1, max_size=b - 1))
        for key, extra in (extras or {}).items():
            example[key] = d(extra if isinstance(extra, st.SearchStrategy) else extra(example))
        example["data"] = d(data_seeds())
        return example

    return draw()
