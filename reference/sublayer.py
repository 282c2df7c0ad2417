"""Residual connection around a sublayer, with the LayerNorm after (post) or before (pre).

``post`` (the notes' and the paper's form): ``LayerNorm(x + Sublayer(x))``.
``pre`` (GPT-2 and most modern models): ``x + Sublayer(LayerNorm(x))``; such stacks add one final
LayerNorm after the last layer (the encoder/decoder own that).
Either way the sublayer's output is *added* to its input, never substituted for it.
"""

from collections.abc import Callable
from typing import Literal

from jaxtyping import Float
from torch import Tensor

from transformer_conformance.reference.checking import checked, require

Placement = Literal["post", "pre"]
PLACEMENTS: tuple[str, ...] = ("post", "pre")


@checked
def residual_sublayer(
    x: Float[Tensor, "*batch d"],
    sublayer: Callable[[Tensor], Tensor],
    norm: Callable[[Tensor], Tensor],
    *,
    placement: Placement = "post",
    dropout: Callable[[Tensor], Tensor] | None = None,
) -> Float[Tensor, "*batch d"]:
    """``norm(x + sublayer(x))`` (post) or ``x + sublayer(norm(x))`` (pre).

    ``norm`` is usually a ``reference.layernorm.LayerNorm``; ``dropout`` (optional, an extension of the
    documented signature) acts on the sublayer's output before the addition.

    Claims: residual.post-ln, residual.adds-update.
    """
    require(placement in PLACEMENTS, "placement", f"one of {PLACEMENTS}", repr(placement))
    inner = x if placement == "post" else norm(x)
    update = sublayer(inner)
    require(
        isinstance(update, Tensor) and tuple(update.shape) == tuple(x.shape),
        "sublayer",
        f"a callable returning a tensor of the input's shape {tuple(x.shape)}",
        tuple(update.shape) if isinstance(update, Tensor) else type(update).__name__,
    )
    if dropout is not None:
        update = dropout(update)
    if placement == "post":
        out: Tensor = norm(x + update)
        return out
    return x + update
