"""Checks of the sampler: frequencies against softmax(logits / T), the T -> 0 and T -> inf limits, the
declared T = 0 behaviour, and rejection of negative or NaN temperatures.

Every check draws through the search driver (``conformance/search.py``): its fixed cases, then
``ctx.examples`` examples drawn by hypothesis (temperatures, vocabulary and batch sizes, logit scales).

Statistical checks use a chi-square goodness-of-fit test with a stated false-alarm rate: each check
fails a correct sampler with probability at most ``ALPHA`` (1e-6), split evenly (Bonferroni) over
every chi-square test the profile lets it run: one per fixed example and one per drawn example
(``alpha_per_test``; at the ``ci`` profile 3 + 4 tests of ``sampler.frequencies`` at 1e-6 / 7 each, at
``thorough`` 3 + 25). Shrinking runs only after a failure, so it adds no false alarm. Draws use a
generator seeded from the example (the driver reseeds the check's generator with its ``data`` seed),
and the ``ci`` profile's hypothesis seed is fixed, so a run is exactly reproducible; ``ALPHA`` bounds
the chance that some seed is unlucky.
"""

import math

import torch
from hypothesis import strategies as st
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.context import CheckContext, FailureKind
from transformer_conformance.reference.sampling import sampling_distribution
from transformer_conformance.registry import check
from transformer_conformance.search import search
from transformer_conformance.strategies import Example, data_seeds, invalid_temperatures, sizes_example

SAMPLER = Capability.SAMPLER
#: False-alarm rate of one statistical check (for a correct sampler).
ALPHA = 1e-6
VOCAB = 6
#: Logit scales of the T = 0 check: ordinary, nearly tied (0.01) and large (1e3) logits.
GREEDY_SCALES = (3.0, 0.01, 1000.0)


def _generator(ctx: CheckContext) -> torch.Generator:
    """A generator on the target's device, seeded from the check's own generator."""
    gen = torch.Generator(device=ctx.device)
    gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=ctx.generator)))
    return gen


def _row(ctx: CheckContext, vocab: int = VOCAB) -> Tensor:
    """Bounded logits (in (-1, 1)) so that every class keeps a usable expected count at T >= 0.5."""
    return torch.tanh(ctx.randn(vocab, dtype=torch.float64)).to(ctx.dtype)


def alpha_per_test(fixed: int, drawn: int, per_example: int = 1) -> float:
    """The level of one chi-square test of a check that runs ``per_example`` tests on each of its
    ``fixed`` and ``drawn`` examples: ``ALPHA`` split evenly over them all (Bonferroni), so the check's
    false-alarm rate for a correct sampler stays at most ``ALPHA`` under every profile."""
    return ALPHA / (per_example * (fixed + drawn))


def draws(ctx: CheckContext) -> int:
    """Number of draws per temperature: 8000 at the ci profile, more for thorough runs."""
    return 2000 * max(2, ctx.examples)


def sample(ctx: CheckContext, logits: Tensor, temperature: float) -> Tensor:
    """Call the target's sampler and check the ids: shape [b], integer dtype, inside the vocabulary."""
    ctx.record(logits=logits, temperature=temperature)
    ids = ctx.call(ctx.adapter.sample, logits, temperature, _generator(ctx))
    ctx.expect_shape(f"ids at T={temperature:g}", ids, (logits.shape[0],))
    tensor: Tensor = ids
    if tensor.is_floating_point() or tensor.dtype == torch.bool:
        ctx.fail(
            FailureKind.DTYPE, f"ids at T={temperature:g}: expected an integer dtype, got {tensor.dtype}"
        )
    lo, hi = int(tensor.min()), int(tensor.max())
    if lo < 0 or hi >= logits.shape[-1]:
        ctx.fail(
            FailureKind.PROPERTY,
            f"ids at T={temperature:g}: expected ids in [0, {logits.shape[-1]}), got [{lo}, {hi}]",
        )
    return tensor


def chi_square_p_value(counts: Tensor, probs: Tensor) -> tuple[float, float]:
    """(statistic, p-value) of Pearson's chi-square test of ``counts`` against ``probs`` (df = k - 1)."""
    n = float(counts.sum())
    expected = probs.to(torch.float64).cpu() * n
    observed = counts.to(torch.float64).cpu()
    stat = float(((observed - expected) ** 2 / expected).sum())
    df = probs.numel() - 1
    p = float(
        torch.special.gammaincc(
            torch.tensor(df / 2, dtype=torch.float64), torch.tensor(stat / 2, dtype=torch.float64)
        )
    )
    return stat, p


def expect_distribution(ctx: CheckContext, what: str, ids: Tensor, probs: Tensor, alpha: float) -> None:
    """PROPERTY failure when the frequencies of ``ids`` reject ``probs`` at level ``alpha``."""
    counts = torch.bincount(ids.cpu(), minlength=probs.numel())
    stat, p = chi_square_p_value(counts, probs)
    if not math.isfinite(p) or p < alpha:
        freq = [round(float(c) / ids.numel(), 4) for c in counts]
        want = [round(float(q), 4) for q in probs]
        ctx.fail(
            FailureKind.PROPERTY,
            f"{what}: frequencies {freq} vs expected {want}: chi-square {stat:.1f}, "
            f"p = {p:.2e} < {alpha:.1e}",
            measured=p,
            allowed=alpha,
        )


@check("sampler.shape", claims=("sampling.temperature-limits",), needs=(SAMPLER,), kind="structural")
def sampler_shape(ctx: CheckContext) -> None:
    """One id per row, integer, inside the vocabulary, at T = 1 for a batch of 1 and of 5 rows."""

    def prop(example: Example) -> None:
        b = example["b"]
        sample(ctx, ctx.randn(b, VOCAB), 1.0)

    search(ctx, prop, fixed=[{"b": 1}, {"b": 5}], strategy=sizes_example(b=(1, 8)))


@check(
    "sampler.frequencies",
    claims=("sampling.temperature-frequencies", "sampling.temperature-limits"),
    needs=(SAMPLER,),
    depends_on=("sampler.shape",),
    kind="statistical",
)
def sampler_frequencies(ctx: CheckContext) -> None:
    """At T = 0.5, 1 and 2.5 (vocabulary 6), then at temperatures in [0.5, 4] and vocabularies of 2..8
    drawn by hypothesis, the frequencies of many draws match softmax(logits / T) (chi-square, false-alarm
    rate 1e-6 for the whole check: 1e-6 / (3 + ctx.examples) per temperature, ``alpha_per_test``)."""
    fixed: list[Example] = [{"t": t, "vocab": VOCAB} for t in (0.5, 1.0, 2.5)]
    alpha = alpha_per_test(len(fixed), ctx.examples)

    def prop(example: Example) -> None:
        t, vocab = float(example["t"]), int(example["vocab"])
        row = _row(ctx, vocab)
        logits = row.expand(draws(ctx), vocab).contiguous()
        ids = sample(ctx, logits, t)
        probs = sampling_distribution(row.to(torch.float64), t)
        expect_distribution(ctx, f"T={t:g} (vocabulary {vocab})", ids, probs, alpha)

    drawn = st.fixed_dictionaries(
        {"t": st.floats(0.5, 4.0), "vocab": st.integers(2, 8), "data": data_seeds()}
    )
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.examples)


@check(
    "sampler.temperature-limits",
    claims=("sampling.temperature-limits",),
    needs=(SAMPLER,),
    depends_on=("sampler.shape",),
    kind="statistical",
)
def sampler_limits(ctx: CheckContext) -> None:
    """A small T with a top gap of 0.1 always picks the argmax; a large T is uniform within the
    chi-square test: T = 1e-3 and 1e4 (vocabulary 6), then small T in [1e-4, 1e-3], large T in [1e4, 1e6]
    and vocabularies of 2..16 drawn by hypothesis (false-alarm rate 1e-6 for the whole check:
    1e-6 / (1 + ctx.examples) per chi-square test, ``alpha_per_test``; a draw off the argmax at gap / T >= 100
    has probability below e^-100)."""
    fixed: list[Example] = [{"low": 1e-3, "high": 1e4, "vocab": VOCAB}]
    alpha = alpha_per_test(len(fixed), ctx.examples)

    def prop(example: Example) -> None:
        low, high, vocab = float(example["low"]), float(example["high"]), int(example["vocab"])
        row = _row(ctx, vocab)
        top = int(row.argmax())
        row = row.clone()
        row[top] = row[top] + 0.1
        n = draws(ctx)
        ids = sample(ctx, row.expand(n, vocab).contiguous(), low)
        wrong = int((ids.to(torch.int64) != top).sum())
        if wrong:
            ctx.fail(
                FailureKind.PROPERTY,
                f"T={low:g}: {wrong} of {n} draws differ from the argmax {top} (vocabulary {vocab})",
                measured=float(wrong),
                allowed=0.0,
            )
        ids = sample(ctx, row.expand(n, vocab).contiguous(), high)
        uniform = torch.full((vocab,), 1.0 / vocab, dtype=torch.float64)
        expect_distribution(ctx, f"T={high:g} vs uniform (vocabulary {vocab})", ids, uniform, alpha)

    @st.composite
    def drawn(d: st.DrawFn) -> Example:
        # exponents, so that a failure shrinks to the fixed case's 1e-3 and 1e4
        low = 10.0 ** d(st.floats(-4.0, -3.0))
        high = 10.0 ** d(st.floats(4.0, 6.0))
        return {"low": low, "high": high, "vocab": d(st.integers(2, 16)), "data": d(data_seeds())}

    search(ctx, prop, fixed=fixed, strategy=drawn(), examples=ctx.examples)


@check(
    "sampler.temperature-zero",
    claims=("sampling.invalid-temperature", "sampling.temperature-limits"),
    needs=(SAMPLER,),
    depends_on=("sampler.shape",),
    kind="structural",
)
def sampler_temperature_zero(ctx: CheckContext) -> None:
    """T = 0 per the declared convention: 'greedy' returns the argmax of every row (no division by
    zero, no NaN), 'error' raises. 64 rows of 6 logits, then batches of 1..64 rows, vocabularies of
    1..32, logit scales (``GREEDY_SCALES``) and rows with -inf entries (masked tokens) drawn by
    hypothesis."""

    def prop(example: Example) -> None:
        b, vocab = int(example["b"]), int(example["vocab"])
        logits = ctx.randn(b, vocab, scale=float(example["scale"]))
        if example.get("masked"):
            # about half the entries -inf, never a row's maximum
            hidden = torch.rand(b, vocab, generator=ctx.generator).to(logits.device) < 0.5
            top = logits.argmax(dim=-1, keepdim=True)
            hidden.scatter_(-1, top, False)
            logits = logits.masked_fill(hidden, float("-inf"))
        expect_zero_temperature(ctx, 0.0, logits)

    drawn = st.fixed_dictionaries(
        {
            "b": st.integers(1, 64),
            "vocab": st.integers(1, 32),
            "scale": st.sampled_from(GREEDY_SCALES),
            "masked": st.booleans(),
            "data": data_seeds(),
        }
    )
    fixed: list[Example] = [{"b": 64, "vocab": VOCAB, "scale": 3.0, "masked": False}]
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.examples)


def expect_zero_temperature(ctx: CheckContext, temperature: float, logits: Tensor) -> None:
    """``temperature`` (0.0 or -0.0) per the declared convention: 'error' raises; 'greedy' returns, for
    every row, an id whose logit is the row's maximum (any of tied maxima)."""
    label = f"T={temperature:g}"
    if ctx.conventions.temperature_zero == "error":
        ctx.record(logits=logits, temperature=temperature)
        ctx.expect_error(
            f"{label} (declared 'error')", ctx.adapter.sample, logits, temperature, _generator(ctx)
        )
        return
    ids = sample(ctx, logits, temperature)
    chosen = logits.gather(-1, ids.to(device=logits.device, dtype=torch.int64)[:, None])[:, 0]
    wrong = int((chosen != logits.max(dim=-1).values).sum())
    if wrong:
        ctx.fail(
            FailureKind.PROPERTY,
            f"{label} (greedy): {wrong} of {logits.shape[0]} rows are not the argmax",
            measured=float(wrong),
            allowed=0.0,
        )


@check(
    "sampler.invalid-temperature",
    claims=("sampling.invalid-temperature",),
    needs=(SAMPLER,),
    depends_on=("sampler.shape",),
    kind="structural",
)
def sampler_invalid_temperature(ctx: CheckContext) -> None:
    """T = -1, T = -1e-6 and T = NaN raise instead of returning ids (3 rows of 6 logits); then
    temperatures drawn by hypothesis (``strategies.invalid_temperatures``: negative ones down to -inf
    and the smallest subnormal, NaN; 0.0 and -0.0, which must be greedy or raise per the declared
    convention, never divide by zero) with batches of 1..8 rows and vocabularies of 1..32."""

    def prop(example: Example) -> None:
        t = float(example["t"])
        logits = ctx.randn(int(example["b"]), int(example["vocab"]))
        if t == 0.0:
            expect_zero_temperature(ctx, t, logits)
            return
        ctx.record(logits=logits, temperature=t)
        ctx.expect_error(f"T={t:g}", ctx.adapter.sample, logits, t, _generator(ctx))

    fixed: list[Example] = [{"t": repr(t), "b": 3, "vocab": VOCAB} for t in (-1.0, -1e-6, float("nan"))]
    drawn = st.fixed_dictionaries(
        {
            "t": invalid_temperatures(),
            "b": st.integers(1, 8),
            "vocab": st.integers(1, 32),
            "data": data_seeds(),
        }
    )
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.examples)
