"""Planted-bug implementations of the position-wise and output parts of the reference.

Each mutant keeps the reference's signature and changes one thing, the way real implementations go
wrong. The tests run the same property check on the reference (must pass) and on the mutant (must
be rejected), so every check is shown to have teeth.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_conformance.reference.layernorm import layer_norm
from transformer_conformance.reference.positional import LearnedPositionalEncoding

# --------------------------------------------------------------------------- layer normalisation


def layer_norm_unbiased(
    x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Bug: unbiased variance (divide by d - 1), as ``torch.var``'s default does."""
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=True)
    y = (x - mean) / torch.sqrt(var + eps)
    return _affine(y, weight, bias)


def layer_norm_eps_outside(
    x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Bug: ``eps`` added to the standard deviation instead of the variance."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    y = (x - mean) / (torch.sqrt(var) + eps)
    return _affine(y, weight, bias)


def layer_norm_over_positions(
    x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Bug: statistics over the last two axes (length and features) of each sample."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(-2, -1), keepdim=True)
    return _affine((x - mean) / torch.sqrt(var + eps), weight, bias)


def layer_norm_across_batch(
    x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Bug: statistics over the batch axis too (a batch norm in disguise)."""
    mean = x.mean(dim=(0, -1), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, -1), keepdim=True)
    return _affine((x - mean) / torch.sqrt(var + eps), weight, bias)


def batch_norm_per_sample(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Bug (for the batch-norm contrast): per-sample statistics, i.e. no cross-sample coupling."""
    return layer_norm(x, None, None, eps)


def _affine(y: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


# --------------------------------------------------------------------------- positional encodings


def _angles(
    num_positions: int, d_model: int, offset: int, base: float, exponent_sign: float = -1.0
) -> Tensor:
    pos = torch.arange(offset, offset + num_positions, dtype=torch.float64)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    freq = torch.pow(torch.tensor(base, dtype=torch.float64), exponent_sign * two_i / d_model)
    return pos[:, None] * freq[None, :]


def _interleave(even: Tensor, odd: Tensor) -> Tensor:
    return torch.stack([even, odd], dim=-1).flatten(-2)


def sinusoidal_swapped(
    num_positions: int,
    d_model: int,
    *,
    offset: int = 0,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Bug: cos in the even columns and sin in the odd ones."""
    a = _angles(num_positions, d_model, offset, base)
    return _interleave(torch.cos(a), torch.sin(a)).to(dtype)


def sinusoidal_exponent_i(
    num_positions: int,
    d_model: int,
    *,
    offset: int = 0,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Bug: exponent ``i/d`` instead of ``2i/d`` (frequencies decay half as fast)."""
    pos = torch.arange(offset, offset + num_positions, dtype=torch.float64)
    i = torch.arange(d_model // 2, dtype=torch.float64)
    a = pos[:, None] / torch.pow(torch.tensor(base, dtype=torch.float64), i / d_model)[None, :]
    return _interleave(torch.sin(a), torch.cos(a)).to(dtype)


def sinusoidal_sin_only(
    num_positions: int,
    d_model: int,
    *,
    offset: int = 0,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Bug: sine in both columns of a pair (no rotation structure)."""
    a = _angles(num_positions, d_model, offset, base)
    return _interleave(torch.sin(a), torch.sin(a)).to(dtype)


def sinusoidal_tan(
    num_positions: int,
    d_model: int,
    *,
    offset: int = 0,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Bug: tangent in the odd columns (unbounded)."""
    a = _angles(num_positions, d_model, offset, base)
    return _interleave(torch.sin(a), torch.tan(a)).to(dtype)


def sinusoidal_rising_frequency(
    num_positions: int,
    d_model: int,
    *,
    offset: int = 0,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Bug: ``pos * base^(2i/d)``: frequencies grow with the dimension instead of decaying."""
    a = _angles(num_positions, d_model, offset, base, exponent_sign=1.0)
    return _interleave(torch.sin(a), torch.cos(a)).to(dtype)


def sinusoidal_length_normalised(
    num_positions: int,
    d_model: int,
    *,
    offset: int = 0,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Bug: positions divided by the sequence length before the sinusoid (length-dependent)."""
    a = _angles(num_positions, d_model, offset, base) * (100.0 / max(num_positions, 1))
    return _interleave(torch.sin(a), torch.cos(a)).to(dtype)


def concatenated_cos_first(
    num_positions: int,
    d_model: int,
    *,
    offset: int = 0,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Bug: the concatenated layout with the halves swapped ([cos | sin])."""
    a = _angles(num_positions, d_model, offset, base)
    return torch.cat([torch.cos(a), torch.sin(a)], dim=-1).to(dtype)


def shift_matrix_wrong_sign(k: int, d_model: int, *, base: float = 10000.0) -> Tensor:
    """Bug: rotation by ``-k`` (the transpose of the right block)."""
    theta = -float(k) * torch.pow(
        torch.tensor(base, dtype=torch.float64), -torch.arange(0, d_model, 2, dtype=torch.float64) / d_model
    )
    m = torch.zeros(d_model, d_model, dtype=torch.float64)
    for i, t in enumerate(theta.tolist()):
        c, s = math.cos(t), math.sin(t)
        m[2 * i, 2 * i], m[2 * i, 2 * i + 1] = c, s
        m[2 * i + 1, 2 * i], m[2 * i + 1, 2 * i + 1] = -s, c
    return m


def constant_positions(
    num_positions: int,
    d_model: int,
    *,
    offset: int = 0,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Bug: every position gets the encoding of position 0 (order information lost)."""
    return _interleave(
        torch.zeros(num_positions, d_model // 2, dtype=torch.float64),
        torch.ones(num_positions, d_model // 2, dtype=torch.float64),
    ).to(dtype)


class WrappingLearnedPositions(LearnedPositionalEncoding):
    """Bug: positions past the table wrap around instead of being rejected."""

    def forward(self, length: int, offset: int = 0) -> Tensor:
        index = torch.arange(offset, offset + length) % self.max_len
        return self.weight[index]


# --------------------------------------------------------------------------- embedding and output


def one_hot_embed_off_by_one(ids: Tensor, weight: Tensor) -> Tensor:
    """Bug: looks up the row after the token id."""
    return weight[(ids + 1) % weight.shape[0]]


def add_positions_by_concat(tokens: Tensor, positions: Tensor) -> Tensor:
    """Bug: concatenates the positional encoding instead of adding it (width 2 * d_model)."""
    return torch.cat([tokens, positions.expand(tokens.shape[0], -1, -1)], dim=-1)


def probabilities_wrong_axis(logits: Tensor) -> Tensor:
    """Bug: softmax over the length axis instead of the vocabulary axis."""
    return torch.softmax(logits, dim=1)


class CopiedOutputProjection(nn.Module):
    """Bug: "tying" by copying the embedding's values into a separate parameter."""

    def __init__(self, embedding_weight: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(embedding_weight.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)


# --------------------------------------------------------------------------- FFN and residual


class MixingFFN(nn.Module):
    """Bug: adds the sequence mean of the hidden layer (positions talk to each other)."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.w_1(x))
        out: Tensor = self.w_2(h + h.mean(dim=-2, keepdim=True))
        return out


class LinearFFN(nn.Module):
    """Bug: the activation is missing (two linear maps collapse to one)."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.w_2(self.w_1(x))
        return out


def residual_substitutes(
    x: Tensor,
    sublayer: Callable[[Tensor], Tensor],
    norm: Callable[[Tensor], Tensor],
    *,
    placement: str = "post",
) -> Tensor:
    """Bug: the sublayer output replaces the input (no residual addition)."""
    return norm(sublayer(x)) if placement == "post" else sublayer(norm(x))


def residual_swapped_placement(
    x: Tensor,
    sublayer: Callable[[Tensor], Tensor],
    norm: Callable[[Tensor], Tensor],
    *,
    placement: str = "post",
) -> Tensor:
    """Bug: ``post`` computes the pre-LN form and vice versa."""
    return x + sublayer(norm(x)) if placement == "post" else norm(x + sublayer(x))


# --------------------------------------------------------------------------- loss


def loss_counts_padding(logits: Tensor, ids: Tensor, *, pad_id: int | None) -> Tensor:
    """Bug: pad targets are scored like real tokens (mean over every position)."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).double(), ids[:, 1:].reshape(-1))


def loss_pad_in_denominator(logits: Tensor, ids: Tensor, *, pad_id: int | None) -> Tensor:
    """Bug: pad targets contribute 0 but are still counted in the mean's denominator."""
    targets = ids[:, 1:]
    logp = torch.log_softmax(logits[:, :-1].double(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    keep = torch.ones_like(targets, dtype=torch.bool) if pad_id is None else targets != pad_id
    return -(logp * keep).sum() / targets.numel()


def loss_unshifted(logits: Tensor, ids: Tensor, *, pad_id: int | None) -> Tensor:
    """Bug: the label shift is missing (logits at t scored against the token at t)."""
    flat_ids = ids.reshape(-1)
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).double(),
        flat_ids,
        ignore_index=-100 if pad_id is None else pad_id,
    )


# --------------------------------------------------------------------------- sampling


def sample_divides_by_zero(
    logits: Tensor, *, temperature: float, generator: torch.Generator | None
) -> Tensor:
    """Bug: T = 0 is not special-cased; the division gives inf/NaN probabilities."""
    probs = torch.softmax(logits.double() / temperature, -1)  # tensor / 0.0 is +-inf, softmax gives NaN
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def sample_ignores_temperature(
    logits: Tensor, *, temperature: float, generator: torch.Generator | None
) -> Tensor:
    """Bug: always samples from softmax(logits) whatever T is (greedy at 0 still works)."""
    if temperature == 0:
        return logits.argmax(-1)
    return torch.multinomial(torch.softmax(logits.double(), -1), 1, generator=generator).squeeze(-1)


def distribution_multiplies(logits: Tensor, temperature: float) -> Tensor:
    """Bug: ``softmax(logits * T)`` (T used as an inverse temperature)."""
    if temperature == 0:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    return torch.softmax(logits * temperature, dim=-1)


def sample_accepts_negative(
    logits: Tensor, *, temperature: float, generator: torch.Generator | None
) -> Tensor:
    """Bug: a negative temperature is silently replaced by its absolute value (NaN passes through)."""
    t = abs(temperature)
    if t == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.double() / t, -1).nan_to_num(1.0)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def sinusoidal_ignores_offset(
    num_positions: int,
    d_model: int,
    *,
    offset: int = 0,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Bug: the ``offset`` argument is dropped (incremental decoding restarts at position 0)."""
    a = _angles(num_positions, d_model, 0, base)
    return _interleave(torch.sin(a), torch.cos(a)).to(dtype)
