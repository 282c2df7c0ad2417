"""Checks of the sampler: frequencies against softmax(logits / T), the T -> 0 and T -> inf limits, the
declared T = 0 behaviour, and rejection of negative or NaN temperatures.

Statistical checks use a chi-square goodness-of-fit test with a stated false-alarm rate: each check
fails a correct sampler with probability at most ``ALPHA`` (1e-6), split evenly over the
temperatures it tests (Bonferroni). Draws use a generator seeded from the check's seed, so a run is
exactly reproducible; ``ALPHA`` bounds the chance that some seed is unlucky.
"""

import math

import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.context import CheckContext, FailureKind
from transformer_conformance.reference.sampling import sampling_distribution
from transformer_conformance.registry import check
from transformer_conformance.search import search
from transformer_conformance.strategies import Example, sizes_example

SAMPLER = Capability.SAMPLER
#: False-alarm rate of one statistical check (for a correct sampler).
ALPHA = 1e-6
VOCAB = 6


def _generator(ctx: CheckContext) -> torch.Generator:
    """A generator on the target's device, seeded from the check's own generator."""
    gen = torch.Generator(device=ctx.device)
    gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=ctx.generator)))
    return gen


def _row(ctx: CheckContext) -> Tensor:
    """Bounded logits (in (-1, 1)) so that every class keeps a usable expected count at T >= 0.5."""
    return torch.tanh(ctx.randn(VOCAB, dtype=torch.float64)).to(ctx.dtype)


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
    """At T = 0.5, 1 and 2.5 the frequencies of many draws match softmax(logits / T) (chi-square,
    false-alarm rate 1e-6 for the whole check)."""
    temps = (0.5, 1.0, 2.5)
    for t in temps:
        row = _row(ctx)
        logits = row.expand(draws(ctx), VOCAB).contiguous()
        ids = sample(ctx, logits, t)
        probs = sampling_distribution(row.to(torch.float64), t)
        expect_distribution(ctx, f"T={t:g}", ids, probs, ALPHA / len(temps))


@check(
    "sampler.temperature-limits",
    claims=("sampling.temperature-limits",),
    needs=(SAMPLER,),
    depends_on=("sampler.shape",),
    kind="statistical",
)
def sampler_limits(ctx: CheckContext) -> None:
    """T = 1e-3 with a top gap of 0.1 always picks the argmax; T = 1e4 is uniform within the chi-square
    test (false-alarm rate 1e-6)."""
    row = _row(ctx)
    top = int(row.argmax())
    row = row.clone()
    row[top] = row[top] + 0.1
    n = draws(ctx)
    ids = sample(ctx, row.expand(n, VOCAB).contiguous(), 1e-3)
    wrong = int((ids != top).sum())
    if wrong:
        ctx.fail(
            FailureKind.PROPERTY,
            f"T=1e-3: {wrong} of {n} draws differ from the argmax {top}",
            measured=float(wrong),
            allowed=0.0,
        )
    ids = sample(ctx, row.expand(n, VOCAB).contiguous(), 1e4)
    expect_distribution(
        ctx, "T=1e4 vs uniform", ids, torch.full((VOCAB,), 1.0 / VOCAB, dtype=torch.float64), ALPHA
    )


@check(
    "sampler.temperature-zero",
    claims=("sampling.invalid-temperature", "sampling.temperature-limits"),
    needs=(SAMPLER,),
    depends_on=("sampler.shape",),
    kind="structural",
)
def sampler_temperature_zero(ctx: CheckContext) -> None:
    """T = 0 per the declared convention: 'greedy' returns the argmax of every row (no division by
    zero, no NaN), 'error' raises."""
    logits = ctx.randn(64, VOCAB, scale=3.0)
    if ctx.conventions.temperature_zero == "error":
        ctx.expect_error("T=0 (declared 'error')", ctx.adapter.sample, logits, 0.0, _generator(ctx))
        return
    ids = sample(ctx, logits, 0.0)
    want = logits.argmax(dim=-1)
    wrong = int((ids.to(want.device) != want).sum())
    if wrong:
        ctx.fail(
            FailureKind.PROPERTY,
            f"T=0 (greedy): {wrong} of {want.numel()} rows are not the argmax",
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
    """T = -1, T = -1e-6 and T = NaN raise instead of returning ids."""
    logits = ctx.randn(3, VOCAB)
    for t in (-1.0, -1e-6, float("nan")):
        ctx.expect_error(f"T={t:g}", ctx.adapter.sample, logits, t, _generator(ctx))
