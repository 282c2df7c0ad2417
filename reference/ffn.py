"""Position-wise feed-forward network: widen to ``d_ff``, apply the activation, project back.

``FFN(x) = W_2 act(W_1 x + b_1) + b_2``, applied to every position with the same weights and no
interaction between positions (a 1x1 convolution over the sequence).
"""

from typing import Literal

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from transformer_conformance.reference.checking import (
    checked,
    require,
    require_floating,
    require_positive,
    require_same_device,
)

Activation = Literal["relu", "gelu"]
ACTIVATIONS: tuple[str, ...] = ("relu", "gelu")


class PositionWiseFFN(nn.Module):
    """``w_2(act(w_1(x)))`` with ``w_1: d_model -> d_ff``, ``w_2: d_ff -> d_model`` (``nn.Linear`` with bias).

    ``activation``: ``relu`` (paper) or ``gelu`` (exact erf form, GPT-2 uses the tanh approximation).
    ``dropout`` (default 0, an extension of the documented signature) acts on the hidden layer.

    Claims: ffn.position-wise, ffn.widen-then-project.
    """

    def __init__(
        self, d_model: int, d_ff: int, *, activation: Activation = "relu", dropout: float = 0.0
    ) -> None:
        super().__init__()
        require_positive("", [("d_model", d_model), ("d_ff", d_ff)])
        require(activation in ACTIVATIONS, "activation", f"one of {ACTIVATIONS}", repr(activation))
        require(0.0 <= dropout < 1.0, "dropout", "a probability in [0, 1)", dropout)
        self.d_model = d_model
        self.d_ff = d_ff
        self.activation = activation
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    @checked
    def hidden(self, x: Float[Tensor, "*batch {self.d_model}"]) -> Float[Tensor, "*batch {self.d_ff}"]:
        """The widened activation ``act(w_1(x))`` (width ``d_ff``).

        Claims: ffn.widen-then-project.
        """
        require_floating("x", x)
        require_same_device(x=x, weight=self.w_1.weight)
        pre: Tensor = self.w_1(x)
        return F.relu(pre) if self.activation == "relu" else F.gelu(pre)

    @checked
    def forward(self, x: Float[Tensor, "*batch {self.d_model}"]) -> Float[Tensor, "*batch {self.d_model}"]:
        """Apply the two-layer network at every position independently.

        Claims: ffn.position-wise, ffn.widen-then-project.
        """
        h: Tensor = self.dropout(self.hidden(x))
        out: Tensor = self.w_2(h)
        return out
