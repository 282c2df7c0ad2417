"""Feed-forward variants: the gated formula (SwiGLU, GeGLU), the plain form, and the activations."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.reference import mutants_variants as mut
from tests.reference.variant_helpers import rand
from transformer_conformance.reference.gated_ffn import FeedForward, activate
from transformer_conformance.reference.tolerance import assert_close, assert_differs

NAMES = ["relu", "gelu", "gelu_tanh", "silu"]


def written_out(x, name: str):
    """Each activation from its textbook formula."""
    if name == "relu":
        return torch.where(x > 0, x, torch.zeros_like(x))
    if name == "gelu":
        return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    return x / (1.0 + torch.exp(-x))


def check_activations(activate_fn, seed: int) -> None:
    x = rand((50,), seed, 3.0)
    for name in NAMES:
        assert_close(activate_fn(x, name), written_out(x, name), name)


@pytest.mark.claim("gated.activations")
@given(seed=st.integers(0, 2**16))
def test_activation_formulas(seed) -> None:
    check_activations(activate, seed)


@pytest.mark.claim("gated.activations")
def test_activation_check_rejects_exact_gelu_for_tanh() -> None:
    with pytest.raises(AssertionError):
        check_activations(mut.activate_exact_for_tanh, 0)


def linear(x, layer):
    out = x @ layer.weight.detach().T
    return out if layer.bias is None else out + layer.bias.detach()


def check_gated(ffn, x) -> None:
    """``W_down(act(W_gate x) * W_up x)`` (or ``W_down act(W_up x)``) with explicit products."""
    up = linear(x, ffn.w_up)
    hidden = (
        written_out(linear(x, ffn.w_gate), ffn.activation) * up
        if ffn.gated
        else written_out(up, ffn.activation)
    )
    assert_close(ffn(x), linear(hidden, ffn.w_down), f"FFN gated={ffn.gated} {ffn.activation}")


@pytest.mark.claim("gated.formula")
@given(
    d=st.integers(1, 8),
    d_ff=st.integers(1, 16),
    name=st.sampled_from(NAMES),
    gated=st.booleans(),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_ffn_formula(d, d_ff, name, gated, bias, seed) -> None:
    torch.manual_seed(seed)
    ffn = FeedForward(d, d_ff, activation=name, gated=gated, bias=bias).double()
    check_gated(ffn, rand((2, 3, d), seed))
    names = {n for n, _ in ffn.named_parameters()}
    assert ("w_gate.weight" in names) == gated and ("w_up.bias" in names) == bias


@pytest.mark.claim("gated.formula")
def test_gate_and_up_are_not_interchangeable() -> None:
    torch.manual_seed(0)
    ffn = FeedForward(4, 8, activation="silu").double()
    swapped = FeedForward(4, 8, activation="silu").double()
    swapped.load_state_dict(
        {
            "w_gate.weight": ffn.w_up.weight,
            "w_up.weight": ffn.w_gate.weight,
            "w_down.weight": ffn.w_down.weight,
        }
    )
    x = rand((3, 4), 1)
    assert_differs(swapped(x), ffn(x), "gate and up exchanged")


@pytest.mark.claim("gated.formula")
def test_formula_check_rejects_swapped_gate_and_up() -> None:
    torch.manual_seed(0)
    ffn = FeedForward(4, 8, activation="silu").double()
    ffn.__class__ = mut.SwappedGateFFN
    with pytest.raises(AssertionError):
        check_gated(ffn, rand((2, 3, 4), 0))
