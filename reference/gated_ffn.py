"""Feed-forward variants: the activations real models use, and the gated (GLU) forms.

Activations: ``relu``; ``gelu`` (exact, ``x * Phi(x)`` with the erf); ``gelu_tanh`` (the tanh
approximation of GPT-2 and Gemma, Hugging Face ``gelu_new``/``gelu_pytorch_tanh``); ``silu``
(``x * sigmoid(x)``, also called swish).

Plain: ``FFN(x) = W_down act(W_up x)``. Gated: ``FFN(x) = W_down (act(W_gate x) * (W_up x))`` with three
separate matrices: SwiGLU is ``silu`` gating (Llama, Mistral), GeGLU ``gelu``/``gelu_tanh`` gating
(Gemma, T5 v1.1). Biases are optional (one flag for all three matrices).
"""

from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from transformer_conformance.reference.checking import checked, require, require_floating, require_positive

ActivationName = Literal["relu", "gelu", "gelu_tanh", "silu"]
ACTIVATION_NAMES: tuple[str, ...] = ("relu", "gelu", "gelu_tanh", "silu")


def activate(x: Tensor, name: str) -> Tensor:
    """Apply the named activation elementwise.

    Claims: gated.activations.
    """
    require(name in ACTIVATION_NAMES, "activation", f"one of {ACTIVATION_NAMES}", repr(name))
    if name == "relu":
        return torch.relu(x)
    if name == "gelu":
        return F.gelu(x)
    if name == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    return F.silu(x)


class FeedForward(nn.Module):
    """``w_down(act(w_up(x)))``, or ``w_down(act(w_gate(x)) * w_up(x))`` when ``gated``.

    Parameters: ``w_up: d_model -> d_ff``, ``w_gate: d_model -> d_ff`` (gated only),
    ``w_down: d_ff -> d_model``.

    Claims: gated.formula, gated.activations.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        *,
        activation: ActivationName = "silu",
        gated: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        require_positive("", [("d_model", d_model), ("d_ff", d_ff)])
        require(activation in ACTIVATION_NAMES, "activation", f"one of {ACTIVATION_NAMES}", repr(activation))
        self.d_model = d_model
        self.d_ff = d_ff
        self.activation = activation
        self.gated = gated
        self.w_gate = nn.Linear(d_model, d_ff, bias=bias) if gated else None
        self.w_up = nn.Linear(d_model, d_ff, bias=bias)
        self.w_down = nn.Linear(d_ff, d_model, bias=bias)

    @checked
    def forward(self, x: Float[Tensor, "*batch {self.d_model}"]) -> Float[Tensor, "*batch {self.d_model}"]:
        """Apply the network at every position independently. Claims: gated.formula."""
        require_floating("x", x)
        up: Tensor = self.w_up(x)
        if self.w_gate is not None:
            gate: Tensor = self.w_gate(x)
            hidden = activate(gate, self.activation) * up
        else:
            hidden = activate(up, self.activation)
        out: Tensor = self.w_down(hidden)
        return out
