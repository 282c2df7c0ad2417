"""Token embedding (a lookup table) and the output projection to vocabulary logits.

The lookup ``E[ids]`` is the same as ``one_hot(ids) @ E``; the output projection is a linear map
``d_model -> vocab`` whose weight may be the embedding matrix itself (weight tying).
"""

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from transformer_conformance.reference.checking import (
    checked,
    require,
    require_floating,
    require_positive,
    require_same_device,
    require_token_ids,
)


class TokenEmbedding(nn.Module):
    """Lookup table ``weight[vocab_size, d_model]``; ``scale=True`` multiplies by ``sqrt(d_model)`` (paper).

    Claims: embedding.lookup-equals-one-hot, embedding.shapes, embedding.learned.
    """

    def __init__(self, vocab_size: int, d_model: int, *, scale: bool = False) -> None:
        super().__init__()
        require_positive("", [("vocab_size", vocab_size), ("d_model", d_model)])
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.scale = scale
        self.weight = nn.Parameter(torch.randn(vocab_size, d_model))

    @checked
    def forward(self, ids: Int[Tensor, "batch length"]) -> Float[Tensor, "batch length {self.d_model}"]:
        """Row ``ids[b, l]`` of the table for every token (times ``sqrt(d_model)`` when scaling).

        Claims: embedding.lookup-equals-one-hot, embedding.shapes.
        """
        require_same_device(ids=ids, weight=self.weight)
        require_token_ids("ids", ids, self.vocab_size)
        out: Tensor = self.weight[ids]
        if self.scale:
            out = out * math.sqrt(self.d_model)
        return out


@checked
def one_hot_embed(
    ids: Int[Tensor, "*batch"], weight: Float[Tensor, "vocab d_model"]
) -> Float[Tensor, "*batch d_model"]:
    """``one_hot(ids) @ weight``: the matrix-product form of the lookup.

    Claims: embedding.lookup-equals-one-hot.
    """
    require_same_device(ids=ids, weight=weight)
    require_token_ids("ids", ids, weight.shape[0])
    one_hot = F.one_hot(ids, num_classes=weight.shape[0]).to(weight.dtype)
    return one_hot @ weight


class OutputProjection(nn.Module):
    """Linear map ``d_model -> vocab_size`` giving logits; ``tied_to`` shares the embedding's Parameter.

    ``bias`` (default False, an extension of the documented signature) adds a vocabulary bias.

    Claims: output.projection, output.tied-embedding.
    """

    def __init__(
        self, d_model: int, vocab_size: int, *, tied_to: TokenEmbedding | None = None, bias: bool = False
    ) -> None:
        super().__init__()
        require_positive("", [("d_model", d_model), ("vocab_size", vocab_size)])
        self.d_model = d_model
        self.vocab_size = vocab_size
        self.weight: nn.Parameter
        if tied_to is not None:
            require(
                tuple(tied_to.weight.shape) == (vocab_size, d_model),
                "tied_to",
                f"an embedding of shape ({vocab_size}, {d_model})",
                tuple(tied_to.weight.shape),
            )
            self.weight = tied_to.weight
        else:
            self.weight = nn.Parameter(torch.randn(vocab_size, d_model) / math.sqrt(d_model))
        self.bias = nn.Parameter(torch.zeros(vocab_size)) if bias else None

    @checked
    def forward(self, x: Float[Tensor, "*batch {self.d_model}"]) -> Float[Tensor, "*batch {self.vocab_size}"]:
        """Logits ``x @ weight.T (+ bias)``.

        Claims: output.projection, output.tied-embedding.
        """
        require_floating("x", x)
        require_same_device(x=x, weight=self.weight)
        logits: Tensor = F.linear(x, self.weight, self.bias)
        return logits

    @checked
    def probabilities(
        self, x: Float[Tensor, "*batch {self.d_model}"]
    ) -> Float[Tensor, "*batch {self.vocab_size}"]:
        """``softmax(forward(x))`` over the vocabulary (computed in float32 at least, cast back).

        Claims: output.projection.
        """
        logits = self.forward(x)
        work = logits if logits.dtype == torch.float64 else logits.float()
        return torch.softmax(work, dim=-1).to(logits.dtype)
