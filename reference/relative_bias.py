"""T5 relative-position buckets and the learned per-head bias they index.

The relative position of key ``j`` to query ``i`` is ``r = j - i``. ``relative_bucket`` maps it to one
of ``num_buckets`` buckets:

- bidirectional: half the buckets for ``r > 0`` (offset ``num_buckets / 2``), half for ``r <= 0``;
  the distance is ``|r|``. Causal: only ``r <= 0`` counts (future keys share bucket 0); distance ``-r``.
- with ``n`` buckets for the distance and ``e = n // 2``: distances ``0 .. e-1`` get their own bucket
  (exact); a distance ``d >= e`` gets ``e + floor(log(d / e) / log(max_distance / e) * (n - e))``, capped
  at ``n - 1`` (log-spaced, every distance from ``max_distance`` on shares the last bucket). The
  logarithm is taken in float32, as T5 and Hugging Face do, so that a product landing on an integer
  rounds as theirs does.

The bias of head ``h`` is ``table[bucket(j - i), h]``; T5 adds it to unscaled scores.
"""

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from transformer_conformance.reference.checking import checked, require


@checked
def relative_bucket(
    relative: Int[Tensor, "*shape"], *, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128
) -> Int[Tensor, "*shape"]:
    """Bucket index of each relative position ``j - i``.

    Claims: relbias.buckets.
    """
    n = num_buckets // 2 if bidirectional else num_buckets
    exact = n // 2
    require(
        exact >= 1,
        "num_buckets",
        "enough buckets for one exact distance (>= 2, or 4 bidirectional)",
        num_buckets,
    )
    require(max_distance > exact, "max_distance", f"a distance > {exact} (the exact range)", max_distance)
    offset = torch.zeros_like(relative)
    if bidirectional:
        offset = torch.where(relative > 0, n, 0)
        distance = relative.abs()
    else:
        distance = (-relative).clamp(min=0)
    scaled = torch.log(distance.clamp(min=1).to(torch.float32) / exact) / math.log(max_distance / exact)
    large = (exact + (scaled * (n - exact)).to(torch.int64)).clamp(max=n - 1)
    return offset + torch.where(distance < exact, distance, large)


class RelativePositionBias(nn.Module):
    """A learned ``[num_buckets, num_heads]`` table (parameter ``weight``) looked up by bucket.

    Claims: relbias.buckets, relbias.distance-only.
    """

    def __init__(
        self, num_heads: int, *, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128
    ) -> None:
        super().__init__()
        require(num_heads > 0, "num_heads", "a positive integer", num_heads)
        self.num_heads = num_heads
        self.bidirectional = bidirectional
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.weight = nn.Parameter(torch.randn(num_buckets, num_heads) * 0.1)

    @checked
    def forward(
        self, query_positions: Int[Tensor, " num_q"], key_positions: Int[Tensor, " num_k"]
    ) -> Float[Tensor, "{self.num_heads} num_q num_k"]:
        """Bias ``[heads, num_q, num_k]`` for the given absolute query and key positions.

        Claims: relbias.distance-only.
        """
        relative = key_positions[None, :] - query_positions[:, None]
        buckets = relative_bucket(
            relative,
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )
        bias: Tensor = self.weight[buckets]  # [num_q, num_k, heads]
        return bias.permute(2, 0, 1)
