"""Choosing the next token from logits: greedy at temperature 0, softmax(logits / T) otherwise.

Low temperature sharpens the distribution towards the argmax, high temperature flattens it
towards uniform. ``T = 0`` is greedy by definition (no division); ``T < 0`` and NaN are errors.
"""

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor

from transformer_conformance.reference.checking import checked, require, require_floating


def _require_temperature(temperature: float) -> None:
    require(
        not math.isnan(temperature) and temperature >= 0.0 and math.isfinite(temperature),
        "temperature",
        "a finite number >= 0 (0 means greedy)",
        temperature,
    )


def _require_logits(logits: Tensor) -> None:
    require_floating("logits", logits)
    require(logits.shape[-1] > 0, "logits", "a non-empty vocabulary axis", tuple(logits.shape))
    if logits.device.type == "meta":
        return
    require(not bool(torch.isnan(logits).any()), "logits", "no NaN entries", "NaN present")
    require(not bool((logits == float("inf")).any()), "logits", "no +inf entries", "+inf present")
    finite_rows = torch.isfinite(logits).any(dim=-1)
    require(bool(finite_rows.all()), "logits", "at least one finite logit per row", "a row that is all -inf")


def _distribution(logits: Tensor, temperature: float) -> Tensor:
    """softmax(logits / T) in float32 at least (float64 stays); one-hot at the first argmax for T = 0."""
    work = logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32)
    if temperature == 0.0:
        index = work.argmax(dim=-1, keepdim=True)
        return torch.zeros_like(work).scatter_(-1, index, 1.0)
    # Subtract the max before dividing: tiny T then gives -inf/0-scale entries, never inf - inf. The
    # division runs in float64: a tiny positive T (below float32's range) must not round to 0 (0/0 = NaN).
    shifted = (work - work.max(dim=-1, keepdim=True).values).to(torch.float64)
    return torch.softmax(shifted / temperature, dim=-1).to(work.dtype)


@checked
def sampling_distribution(
    logits: Float[Tensor, "*batch vocab"], temperature: float | int
) -> Float[Tensor, "*batch vocab"]:
    """``softmax(logits / T)``; for ``T = 0`` the one-hot vector at the (first) argmax.

    Claims: sampling.temperature-limits, sampling.temperature-frequencies, sampling.invalid-temperature.
    """
    _require_temperature(float(temperature))
    _require_logits(logits)
    return _distribution(logits, float(temperature)).to(logits.dtype)


@checked
def sample_next(
    logits: Float[Tensor, "batch vocab"],
    *,
    temperature: float | int,
    generator: torch.Generator | None = None,
) -> Int[Tensor, " batch"]:
    """One token id per row: argmax for ``T = 0``, else a draw from ``softmax(logits / T)``.

    ``generator`` (on the logits' device) makes draws reproducible.

    Claims: sampling.temperature-limits, sampling.temperature-frequencies, sampling.invalid-temperature.
    """
    _require_temperature(float(temperature))
    _require_logits(logits)
    if generator is not None:
        require(
            generator.device.type == logits.device.type,
            "generator",
            f"a torch.Generator on the logits' device ({logits.device.type})",
            generator.device,
        )
    if float(temperature) == 0.0:
        return logits.argmax(dim=-1)
    probs = _distribution(logits, float(temperature))
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
