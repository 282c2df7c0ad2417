"""KV cache: decoding with the cache against recomputing the whole prefix at every step.

Claims: kvcache.equals-recompute, decoding.autoregressive, training.parallel-speed.

Model: ``reference.model.DecoderOnlyLM`` at the base size (d_model 512, 8 heads, d_ff 2048, 6 layers,
vocabulary 1000), random weights, eval mode, batch 1, greedy decoding from a one-token prompt (BOS).
Step i (1-based) sees a context of i tokens and yields token i.

- Cached: ``new_cache`` then ``step`` on one token at a time; every step is timed, for every position.
  The longest generation is run once per round; the shorter length's figures are its first steps
  (greedy decoding from the same prompt makes them the same computation).
- Recompute: step i runs ``forward`` on the i tokens so far and keeps the last position's logits. A full
  run costs the sum over i of that forward, which grows quadratically, so it is timed at sampled
  positions only and integrated: per-step time is interpolated linearly between samples and summed over
  every position 1..N. Linear interpolation of a convex cost slightly overestimates the recompute total
  between samples; the samples are dense enough at the base size that this stays small.
- Interleaving: the recompute forward at a sampled position p is timed right after cached step p of the
  same generation, so both sides see the machine in the same state; each round is one such generation.
  Per-position medians over rounds; a total is the sum of the per-step medians (robust to a burst of
  load from other processes hitting one round).
- Sanity: at every sampled position the cached step's logits are compared with the recompute logits.
- For contrast (claim training.parallel-speed): the cached token-by-token total against one
  teacher-forced forward over the same N tokens (the recompute sample at N), which yields all N logits.
"""

import math
import time

import torch

from benchmarks._timing import Row, Settings, linear_slope, loglog_slope, median, synchronize, time_call

NAME = "kv-cache"
SPEEDUP_TARGET = 10.0
TARGET_LENGTH = 1024


def _sample_positions(lengths: tuple[int, ...], settings: Settings) -> list[int]:
    """Recompute sample positions: a fixed grid plus 1 and every reported length."""
    n = max(lengths)
    base = settings.pick(
        (1, 16, 64, 128, 256, 384, 512, 768, 1024),
        (1, 16, 64, 128, 192, 256),
        (1, 4, 8, 12, 16),
    )
    return sorted({p for p in base if p <= n} | {1, *lengths})


def _integrate(positions: list[int], per_step: list[float], n: int) -> float:
    """Sum over i = 1..n of the per-step time, linearly interpolated between sampled positions.

    ``positions`` starts at 1 and ends at ``n``.
    """
    total = 0.0
    for (p0, t0), (p1, t1) in zip(zip(positions, per_step), zip(positions[1:], per_step[1:])):
        for i in range(p0, p1):  # p1 is counted by the next segment (or below)
            total += t0 + (t1 - t0) * (i - p0) / (p1 - p0)
    return total + per_step[-1]


def _window_median(values: list[float], position: int, half: int = 8) -> float:
    """Median per-step time in a window around a 1-based position (smooths scheduler noise)."""
    lo, hi = max(0, position - 1 - half), min(len(values), position + half)
    return median(values[lo:hi])


def run(settings: Settings) -> list[Row]:
    """Speedup of cached decoding at each length; per-step time against position for both sides."""
    from transformer_conformance.reference.config import TransformerConfig
    from transformer_conformance.reference.model import DecoderOnlyLM

    lengths: tuple[int, ...] = settings.pick((256, 1024), (128, 256), (8, 16))
    n_max = max(lengths)
    if settings.mode == "tiny":
        config = TransformerConfig.tiny(max_len=n_max + 8)
    else:
        config = TransformerConfig(vocab_size=1000, max_len=n_max + 8)
    rounds = settings.rounds(full=3, quick=2)
    device = settings.device
    torch.manual_seed(settings.seed)
    model = DecoderOnlyLM(config).to(device).eval()
    prompt = torch.full((1, 1), config.bos_id, dtype=torch.long, device=device)
    positions = _sample_positions(lengths, settings)

    def generation(recompute: dict[int, list[float]] | None) -> tuple[list[float], float]:
        """One greedy generation of n_max tokens on the cache; returns the per-step seconds and the worst
        logits difference against recompute. With ``recompute``, the recompute forward over the prefix is
        timed right after the cached step at every sampled position (the two sides then share the
        machine's conditions of that moment; the recompute call is outside the cached step's timing)."""
        step_times: list[float] = []
        worst = 0.0
        ids = prompt
        with torch.no_grad():
            cache = model.new_cache(1)
            chunk = prompt
            for i in range(1, n_max + 1):
                synchronize(device)
                start = time.perf_counter()
                logits = model.step(chunk, cache)
                synchronize(device)
                step_times.append(time.perf_counter() - start)
                if recompute is not None and i in recompute:
                    prefix = ids  # the i tokens the cached step i has seen

                    def forward(prefix: torch.Tensor = prefix) -> object:
                        return model(prefix)[:, -1]

                    recompute[i].append(time_call(forward, device))
                    full = model(prefix)[:, -1]
                    worst = max(worst, float((full - logits[:, -1]).abs().max()))
                chunk = logits[:, -1].argmax(dim=-1, keepdim=True)
                ids = torch.cat([ids, chunk], dim=1)
        return step_times, worst

    # Warm-up of both sides (allocator, caches), then the measured rounds.
    with torch.no_grad():
        model(torch.zeros(1, n_max, dtype=torch.long, device=device))
        cache = model.new_cache(1)
        for _ in range(min(16, n_max)):
            model.step(prompt, cache)
    cached_runs: list[list[float]] = []
    recompute: dict[int, list[float]] = {p: [] for p in positions}
    worst_diff = 0.0
    for _ in range(rounds):
        step_times, worst = generation(recompute)
        cached_runs.append(step_times)
        worst_diff = max(worst_diff, worst)

    cached_per_step = [median([run_[i] for run_ in cached_runs]) for i in range(n_max)]
    recompute_per_step = [median(recompute[p]) for p in positions]
    rows: list[Row] = []
    for n in lengths:
        cached_total = sum(cached_per_step[:n])
        pts = [p for p in positions if p <= n]
        per = [recompute_per_step[positions.index(p)] for p in pts]
        recompute_total = _integrate(pts, per, n)
        speedup = recompute_total / cached_total
        target = n == TARGET_LENGTH  # the target is stated for 1024 tokens (full mode only)
        rows.append(
            Row(NAME, f"N={n}", "speedup recompute/cached", speedup, "x",
                f">= {SPEEDUP_TARGET:g}x" if target else "", speedup >= SPEEDUP_TARGET if target else None,
                f"cached {cached_total:.3g} s, recompute ~{recompute_total:.3g} s (sampled at {len(pts)} "
                f"positions, integrated)",
                {"cached_s": cached_total, "recompute_s": recompute_total, "sampled_positions": pts})
        )
        one_pass = recompute_per_step[positions.index(n)]
        rows.append(
            Row(NAME, f"N={n}", "token-by-token / one parallel pass", cached_total / one_pass, "x",
                note=f"cached decoding of {n} tokens vs one teacher-forced forward over them "
                f"({one_pass * 1e3:.0f} ms): the same logits (training.parallel-equals-sequential)")
        )
    report_at = [p for p in settings.pick((64, 256, 512, 1024), (64, 128, 256), (4, 8, 16)) if p <= n_max]
    for p in report_at:
        rows.append(Row(NAME, f"pos={p}", "cached step time", _window_median(cached_per_step, p) * 1e3, "ms",
                        note="median of a +-8 position window"))
        if p in positions:
            rows.append(Row(NAME, f"pos={p}", "recompute step time",
                            recompute_per_step[positions.index(p)] * 1e3, "ms"))
    start = min(16, n_max // 2)
    xs = list(range(start, n_max + 1))
    ys = cached_per_step[start - 1:]
    slope = linear_slope(xs, ys)
    exponent = loglog_slope(xs, ys)
    rows.append(Row(NAME, f"pos {start}..{n_max}", "cached step slope", slope * 1e6, "us/pos",
                    note="least squares of per-step time on position"))
    rows.append(Row(NAME, f"pos {start}..{n_max}", "cached step growth exponent", exponent, "",
                    "<= 1 (linear)", exponent <= 1.0, "log-log least squares; 0 = flat, 1 = linear"))
    rec_pts = [(p, t) for p, t in zip(positions, recompute_per_step) if p >= start]
    if len(rec_pts) >= 2:
        rec_exp = loglog_slope([p for p, _ in rec_pts], [t for _, t in rec_pts])
        rows.append(Row(NAME, f"pos {rec_pts[0][0]}..{n_max}", "recompute step growth exponent", rec_exp, "",
                        note="for contrast: the whole prefix is reprocessed"))
    rows.append(Row(NAME, "sampled positions", "max |cached - recompute| logits", worst_diff, "",
                    note="sanity (kvcache.equals-recompute); not a timing"))
    if any(math.isnan(r.value) for r in rows):
        raise RuntimeError("kv-cache benchmark produced a NaN figure")
    return rows

