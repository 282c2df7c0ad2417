"""ALiBi (attention with linear biases): no position vectors, a per-head penalty linear in the distance.

Head ``h`` adds ``-slope_h * (i - j)`` to the score of query position ``i`` and key position ``j``.
Slopes (the ALiBi paper's recipe, as Hugging Face BLOOM): for ``n`` a power of two, the geometric
sequence ``2^(-8k/n)`` for ``k = 1 .. n``. Otherwise take the ``p = 2^floor(log2 n)`` slopes of the
nearest lower power of two, then the odd-indexed terms ``2^(-4k/p)`` for ``k = 1, 3, 5, ..`` (every
other slope of the ``2p`` recipe) until there are ``n``.
"""

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor

from transformer_conformance.reference.checking import checked, require


def _geometric(count: int, power_of_two: int) -> list[float]:
    ratio = 2.0 ** (-8.0 / power_of_two)
    return [ratio**k for k in range(1, count + 1)]


def alibi_slopes(num_heads: int) -> Float[Tensor, " {num_heads}"]:
    """The slope of every head (float64), for any positive head count.

    Claims: alibi.slopes.
    """
    require(num_heads > 0, "num_heads", "a positive integer", num_heads)
    p = 2 ** math.floor(math.log2(num_heads))
    slopes = _geometric(p, p)
    if p != num_heads:
        extra = _geometric(2 * p, 2 * p)  # the 2p recipe: 2^(-4k/p)
        slopes += extra[0::2][: num_heads - p]
    return torch.tensor(slopes, dtype=torch.float64)


@checked
def alibi_bias(
    slopes: Float[Tensor, " heads"],
    query_positions: Int[Tensor, " num_q"],
    key_positions: Int[Tensor, " num_k"],
) -> Float[Tensor, "heads num_q num_k"]:
    """Additive score bias ``-slope_h * (q_i - k_j)`` for every head, query and key position.

    Claims: alibi.distance-only, alibi.breaks-permutation-equivariance.
    """
    distance = query_positions[:, None].to(slopes.dtype) - key_positions[None, :].to(slopes.dtype)
    return -slopes[:, None, None] * distance[None]
