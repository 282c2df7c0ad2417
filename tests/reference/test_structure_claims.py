"""Structural claims: residual survival, distinct positions, head widths, bidirectional encoder,
stacks of layers, and the sublayers of each layer.

Each contract is a ``check_*`` function taking the implementation; the reference must pass it and a
planted-bug mutant from ``mutants_structure`` must fail the very same function. Models run in float64
and every numerical comparison goes through ``reference.tolerance`` (``assert_close`` / ``direct``).
"""

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given
from hypothesis import strategies as st
from torch import Tensor, nn

from tests.reference import mutants_structure as mut
from tests.reference.mutants_pointwise import MixingFFN
from transformer_conformance.reference.checking import ReferenceInputError
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.decoder import Decoder, DecoderLayer, DecoderOnlyStack
from transformer_conformance.reference.encoder import Encoder, EncoderLayer
from transformer_conformance.reference.layernorm import LayerNorm
from transformer_conformance.reference.masks import padding_mask_from_lengths
from transformer_conformance.reference.multihead import MultiHeadAttention
from transformer_conformance.reference.positional import sinusoidal_encoding
from transformer_conformance.reference.tolerance import assert_close, assert_differs, direct

DT = torch.float64
seeds = st.integers(min_value=0, max_value=2**31 - 1)
placements = st.sampled_from(["post", "pre"])
layouts = st.sampled_from(["interleaved", "concatenated"])


def build(
    cls: Callable[[TransformerConfig], nn.Module], device: torch.device | str, placement: str, seed: int
) -> Any:
    """A fresh float64 module in eval mode, LayerNorm gains/biases randomised so every norm matters."""
    torch.manual_seed(seed)
    module = cls(TransformerConfig.tiny(norm_placement=placement)).to(device=device, dtype=DT).eval()
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, LayerNorm):
                sub.weight.uniform_(0.5, 1.5)
                sub.bias.uniform_(-0.5, 0.5)
    return module


def rand(seed: int, shape: tuple[int, ...], device: torch.device | str) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DT).to(device)


def torch_norm(norm: LayerNorm, h: Tensor) -> Tensor:
    """The LayerNorm module's parameters applied through torch's own layer_norm."""
    return F.layer_norm(h, (norm.d,), norm.weight, norm.bias, norm.eps)


def residual(h: Tensor, f: Callable[[Tensor], Tensor], norm: LayerNorm, placement: str) -> Tensor:
    """Post-LN ``norm(h + f(h))`` or pre-LN ``h + f(norm(h))``, written out for the by-hand recomputations."""
    if placement == "post":
        return torch_norm(norm, h + f(h))
    return h + f(torch_norm(norm, h))


# --------------------------------------------------------------------------- attention.output-replaces-input


def check_input_survives_zero_attention(layer: EncoderLayer, x: Tensor, other: Tensor) -> None:
    """With ``w_o`` (weight and bias) zeroed the attention sublayer returns LayerNorm(x) (post) or x (pre);
    the layer's output is then the FFN sublayer applied to that, and still depends on ``x``."""
    with torch.no_grad():
        layer.self_attn.w_o.weight.zero_()
        layer.self_attn.w_o.bias.zero_()
        placement = layer.config.norm_placement
        after_attention = torch_norm(layer.norm_1, x) if placement == "post" else x
        expected = residual(after_attention, layer.ffn, layer.norm_2, placement)
        out = layer(x)
        assert_close(out, expected, f"{placement}-LN layer with a zero attention output")
        assert_differs(layer(other), out, "layer output for a different input")


@pytest.mark.claim("attention.output-replaces-input")
@given(placement=placements, seed=seeds)
def test_attention_output_is_added_not_substituted(device: torch.device, placement: str, seed: int) -> None:
    x, other = rand(seed, (2, 4, 16), device), rand(seed + 1, (2, 4, 16), device)
    check_input_survives_zero_attention(build(EncoderLayer, device, placement, seed), x, other)


@pytest.mark.claim("attention.output-replaces-input")
@pytest.mark.parametrize("placement", ["post", "pre"])
def test_replacing_layer_loses_input_and_is_rejected(placement: str) -> None:
    x, other = rand(0, (2, 4, 16), "cpu"), rand(1, (2, 4, 16), "cpu")
    layer = build(mut.ReplacingEncoderLayer, "cpu", placement, 0)
    with pytest.raises(AssertionError):
        check_input_survives_zero_attention(layer, x, other)
    with torch.no_grad():  # the counterexample: a replacing layer returns one constant for every input
        out = layer(x)
        assert_close(layer(other), out, "replacing layer on a different input")
        assert_close(out, out[:1, :1].expand_as(out), "replacing layer across positions")


# --------------------------------------------------------------------------- positional.sinusoidal.distinct

Encode = Callable[..., Tensor]


def check_rows_distinct(encode: Encode, n: int, d_model: int, layout: str, device: torch.device) -> None:
    """No two of the ``n`` rows are equal: each row differs from its nearest other row (direct rule)."""
    table = encode(n, d_model, layout=layout, dtype=DT, device=device).cpu()
    assert tuple(table.shape) == (n, d_model)
    gaps = torch.cdist(table, table, p=float("inf"))
    gaps.fill_diagonal_(float("inf"))
    nearest = gaps.argmin(dim=1).tolist()
    for p, q in enumerate(nearest):
        result = direct(table[p], table[q])
        if result.ok:
            raise AssertionError(f"positions {p} and {q} share an encoding ({result.describe()})")


@pytest.mark.claim("positional.sinusoidal.distinct")
@given(n=st.integers(2, 400), half=st.integers(1, 32), layout=layouts)
@example(n=400, half=1, layout="interleaved")
@example(n=400, half=1, layout="concatenated")
def test_sinusoidal_rows_distinct(device: torch.device, n: int, half: int, layout: str) -> None:
    check_rows_distinct(sinusoidal_encoding, n, 2 * half, layout, device)


@pytest.mark.claim("positional.sinusoidal.distinct")
@given(n=st.integers(8, 400), half=st.integers(1, 32), layout=layouts)
def test_distinct_check_rejects_period_collapse(n: int, half: int, layout: str) -> None:
    with pytest.raises(AssertionError, match="share an encoding"):
        check_rows_distinct(mut.sinusoidal_period_7, n, 2 * half, layout, torch.device("cpu"))


# --------------------------------------------------------------------------- mha.head-projections


def check_head_projections(mha: MultiHeadAttention, x: Tensor) -> None:
    """Q/K/V heads are ``[b, h, l, d_model / h]``; head j is the d_model -> d_head projection by rows j."""
    b, length, d_model = x.shape
    h = mha.num_heads
    d_head = d_model // h
    with torch.no_grad():
        for layer in (mha.w_q, mha.w_k, mha.w_v):
            heads = mha.project_heads(layer, x)
            assert tuple(heads.shape) == (b, h, length, d_head), f"head shape {tuple(heads.shape)}"
            for j in range(h):
                rows = slice(j * d_head, (j + 1) * d_head)
                own = F.linear(x, layer.weight[rows], layer.bias[rows])
                assert_close(heads[:, j], own, f"head {j} projection")


_BASE_MHA: dict[str, MultiHeadAttention] = {}


def base_mha(device: torch.device) -> MultiHeadAttention:
    """The base model's MultiHeadAttention(512, 8), built once per device."""
    if str(device) not in _BASE_MHA:
        torch.manual_seed(0)
        _BASE_MHA[str(device)] = MultiHeadAttention(512, 8).to(device=device, dtype=DT)
    return _BASE_MHA[str(device)]


@pytest.mark.claim("mha.head-projections")
def test_base_heads_are_64_wide(device: torch.device) -> None:
    mha = base_mha(device)
    x = rand(0, (2, 3, 512), device)
    check_head_projections(mha, x)
    with torch.no_grad():
        assert tuple(mha.project_heads(mha.w_q, x).shape) == (2, 8, 3, 64)


@pytest.mark.claim("mha.head-projections")
@given(d_head=st.integers(1, 8), num_heads=st.integers(1, 6), length=st.integers(1, 5), seed=seeds)
def test_head_projections(device: torch.device, d_head: int, num_heads: int, length: int, seed: int) -> None:
    torch.manual_seed(seed)
    mha = MultiHeadAttention(d_head * num_heads, num_heads).to(device=device, dtype=DT)
    check_head_projections(mha, rand(seed, (2, length, d_head * num_heads), device))


@pytest.mark.claim("mha.head-projections")
def test_head_check_rejects_full_width_heads() -> None:
    torch.manual_seed(0)
    mha = mut.FullWidthHeadsMHA(16, 4).to(dtype=DT)
    with pytest.raises(AssertionError, match="head shape"):
        check_head_projections(mha, rand(0, (2, 3, 16), "cpu"))


def check_rejects_indivisible(cls: type[MultiHeadAttention], d_model: int, num_heads: int) -> None:
    """An indivisible ``d_model`` raises ReferenceInputError whose message names both numbers."""
    try:
        cls(d_model, num_heads)
    except ReferenceInputError as err:
        message = str(err)
        for number in (d_model, num_heads):
            assert re.search(rf"(?<!\d){number}(?!\d)", message), f"{number} not named in {message!r}"
        return
    raise AssertionError(f"MultiHeadAttention({d_model}, {num_heads}) was accepted")


@pytest.mark.claim("mha.head-projections")
@given(d_model=st.integers(1, 200), num_heads=st.integers(2, 12))
@example(d_model=512, num_heads=7)
def test_indivisible_width_is_rejected(d_model: int, num_heads: int) -> None:
    if d_model % num_heads == 0:
        d_model += 1
    check_rejects_indivisible(MultiHeadAttention, d_model, num_heads)


@pytest.mark.claim("mha.head-projections")
@pytest.mark.parametrize("mutant", [mut.FlooringMHA, mut.VagueErrorMHA])
def test_indivisible_check_rejects_mutants(mutant: type[MultiHeadAttention]) -> None:
    with pytest.raises(AssertionError):
        check_rejects_indivisible(mutant, 30, 4)


# --------------------------------------------------------------------------- encoder.bidirectional


def check_bidirectional(model: nn.Module, x: Tensor, pad_mask: Tensor, i: int, j: int) -> None:
    """For real positions ``i < j``: changing input j changes output i; changing input i changes output j."""
    with torch.no_grad():
        out = model(x, pad_mask)
        for changed, watched, what in ((j, i, "earlier"), (i, j, "later")):
            moved = x.clone()
            moved[:, changed] += 1.0 + x[:, changed].flip(-1)
            assert_differs(
                model(moved, pad_mask)[:, watched],
                out[:, watched],
                f"{what} position {watched} after input {changed} changed",
            )


def real_positions(length: int, j: int, device: torch.device | str) -> Tensor:
    """Padding mask: sample 0 has no padding, sample 1 is real up to position ``j`` only."""
    return padding_mask_from_lengths(torch.tensor([length, j + 1]), length).to(device)


positions = st.integers(2, 6).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(1, n - 1)).flatmap(
        lambda nj: st.tuples(st.just(nj[0]), st.integers(0, nj[1] - 1), st.just(nj[1]))
    )
)


@pytest.mark.claim("encoder.bidirectional")
@given(kind=st.sampled_from([EncoderLayer, Encoder]), placement=placements, pos=positions, seed=seeds)
def test_encoder_is_bidirectional(
    device: torch.device, kind: type[nn.Module], placement: str, pos: tuple[int, int, int], seed: int
) -> None:
    length, i, j = pos
    model = build(kind, device, placement, seed)
    check_bidirectional(model, rand(seed, (2, length, 16), device), real_positions(length, j, device), i, j)


def causal_encoder(config: TransformerConfig) -> Encoder:
    """An Encoder whose layers all carry the causal-mask bug."""
    encoder = Encoder(config)
    for layer in encoder.layers:
        layer.__class__ = mut.CausalEncoderLayer
    return encoder


@pytest.mark.claim("encoder.bidirectional")
@pytest.mark.parametrize("mutant", [mut.CausalEncoderLayer, causal_encoder])
@given(placement=placements, pos=positions, seed=seeds)
def test_bidirectional_check_rejects_causal_encoder(
    mutant: Callable[[TransformerConfig], nn.Module], placement: str, pos: tuple[int, int, int], seed: int
) -> None:
    length, i, j = pos
    model = build(mutant, "cpu", placement, seed)
    with pytest.raises(AssertionError, match="earlier position"):
        check_bidirectional(model, rand(seed, (2, length, 16), "cpu"), real_positions(length, j, "cpu"), i, j)


# --------------------------------------------------------------------------- encoder.mixing-only-in-attention


def check_mixing_only_in_attention(layer: EncoderLayer, x: Tensor) -> None:
    """With the attention output projection zeroed the layer is position-wise (changing input j leaves
    every other output unchanged); with it restored, output i depends on input j."""
    n = x.shape[1]
    with torch.no_grad():
        full = layer(x)
        saved = layer.self_attn.w_o.weight.clone(), layer.self_attn.w_o.bias.clone()
        layer.self_attn.w_o.weight.zero_()
        layer.self_attn.w_o.bias.zero_()
        try:
            silent = layer(x)
            for j in range(n):
                moved = x.clone()
                moved[:, j] += 1.0 + x[:, j].flip(-1)
                others = [i for i in range(n) if i != j]
                what = f"outputs other than {j} with attention silenced"
                assert_close(layer(moved)[:, others], silent[:, others], what)
        finally:
            layer.self_attn.w_o.weight.copy_(saved[0])
            layer.self_attn.w_o.bias.copy_(saved[1])
        if n > 1:
            moved = x.clone()
            moved[:, -1] += 1.0 + x[:, -1].flip(-1)
            assert_differs(layer(moved)[:, 0], full[:, 0], "output 0 after input n-1 changed, attention on")


@pytest.mark.claim("encoder.mixing-only-in-attention", "ffn.position-wise", "layernorm.position-wise")
@given(placement=placements, n=st.integers(1, 5), seed=seeds)
def test_positions_interact_only_through_attention(
    device: torch.device, placement: str, n: int, seed: int
) -> None:
    layer = build(EncoderLayer, device, placement, seed)
    check_mixing_only_in_attention(layer, rand(seed, (2, n, 16), device))


@pytest.mark.claim("encoder.mixing-only-in-attention")
@pytest.mark.parametrize("placement", ["post", "pre"])
def test_mixing_check_rejects_mixing_ffn(placement: str) -> None:
    layer = build(EncoderLayer, "cpu", placement, 0)
    layer.ffn = MixingFFN(16, 32).to(dtype=DT)
    with pytest.raises(AssertionError, match="attention silenced"):
        check_mixing_only_in_attention(layer, rand(0, (2, 4, 16), "cpu"))


# ------------------------------------------------------------------ attention.permutation-equivariance


def layer_and_weights(layer: EncoderLayer, x: Tensor, pad_mask: Tensor) -> tuple[Tensor, Tensor]:
    """The layer's output and its self-attention weights ``[b, h, l, l]`` (read with a forward hook)."""
    seen: list[Tensor] = []
    hook = layer.self_attn.register_forward_hook(lambda m, args, result: seen.append(result[1]))
    try:
        out = layer(x, pad_mask)
    finally:
        hook.remove()
    return out, seen[-1]


def check_layer_permutation_equivariance(
    layer: EncoderLayer, x: Tensor, pad_mask: Tensor, perm: Tensor
) -> None:
    """Permuting the positions (and the padding mask with them) by P: outputs become P f(x) and the
    self-attention weights P W P^T, i.e. W'[i, j] = W[perm[i], perm[j]]."""
    with torch.no_grad():
        out, w = layer_and_weights(layer, x, pad_mask)
        out_p, w_p = layer_and_weights(layer, x[:, perm], pad_mask[:, perm])
    assert_close(out_p, out[:, perm], "encoder layer outputs of the permuted sequence")
    assert_close(w_p, w[:, :, perm][:, :, :, perm], "attention weights (P W P^T) of the permuted sequence")


permutations = st.integers(2, 6).flatmap(lambda n: st.permutations(list(range(n))))


@pytest.mark.claim("attention.permutation-equivariance")
@given(placement=placements, perm=permutations, seed=seeds)
def test_encoder_layer_is_permutation_equivariant(
    device: torch.device, placement: str, perm: list[int], seed: int
) -> None:
    n = len(perm)
    layer = build(EncoderLayer, device, placement, seed)
    pad_mask = padding_mask_from_lengths(torch.tensor([n, max(1, n - 1)]), n).to(device)
    order = torch.tensor(perm, device=device)
    check_layer_permutation_equivariance(layer, rand(seed, (2, n, 16), device), pad_mask, order)


@pytest.mark.claim("attention.permutation-equivariance")
@pytest.mark.parametrize("placement", ["post", "pre"])
def test_layer_permutation_check_rejects_position_leak(placement: str) -> None:
    layer = build(mut.PositionLeakEncoderLayer, "cpu", placement, 0)
    pad_mask = torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(AssertionError, match="permuted sequence"):
        x, perm = rand(0, (2, 4, 16), "cpu"), torch.tensor([1, 3, 0, 2])
        check_layer_permutation_equivariance(layer, x, pad_mask, perm)


# --------------------------------------------------------------------------- decoder.stack


def check_stack(
    stack: Decoder | DecoderOnlyStack,
    x: Tensor,
    run_layer: Callable[[nn.Module, Tensor], Tensor],
    out: Tensor,
) -> None:
    """``num_layers`` layers of one class with the same parameter names and shapes; ``out`` (the stack's
    forward) equals running the layers one after another by hand, then ``final_norm`` (pre only)."""
    layers = list(stack.layers)
    assert len(layers) == stack.config.num_layers >= 2, f"{len(layers)} layers"
    layouts = [{name: tuple(p.shape) for name, p in layer.named_parameters()} for layer in layers]
    for index, (layer, layout) in enumerate(zip(layers, layouts)):
        assert type(layer) is type(layers[0]), f"layer {index} is a {type(layer).__name__}"
        assert layout == layouts[0], f"layer {index} parameters differ from layer 0"
    h = x
    with torch.no_grad():
        for layer in layers:
            h = run_layer(layer, h)
        if stack.final_norm is not None:
            h = torch_norm(stack.final_norm, h)
    assert_close(out, h, "stack output against layers applied in sequence")


def check_decoder_stack(decoder: Decoder, x: Tensor, memory: Tensor) -> None:
    """The decoder: a chained stack of cross-attending layers, every one reading the same ``memory``."""
    assert all(
        any(n.startswith("cross_attn.") for n, _ in layer.named_parameters()) for layer in decoder.layers
    )
    with torch.no_grad():
        out = decoder(x, memory)
    check_stack(decoder, x, lambda layer, h: layer(h, memory), out)


def check_lm_stack(stack: DecoderOnlyStack, x: Tensor) -> None:
    """The decoder-only LM stack: the same chained stack, with no cross-attention parameters at all."""
    names = [name for name, _ in stack.named_parameters()]
    assert not [n for n in names if "cross_attn" in n], "a decoder-only stack has cross-attention"
    with torch.no_grad():
        out = stack(x)
    check_stack(stack, x, lambda layer, h: layer(h), out)


@pytest.mark.claim("decoder.stack")
@given(placement=placements, tgt=st.integers(1, 5), src=st.integers(1, 5), seed=seeds)
def test_decoder_stack(device: torch.device, placement: str, tgt: int, src: int, seed: int) -> None:
    decoder = build(Decoder, device, placement, seed)
    check_decoder_stack(decoder, rand(seed, (2, tgt, 16), device), rand(seed + 1, (2, src, 16), device))


@pytest.mark.claim("decoder.stack")
@given(placement=placements, length=st.integers(1, 5), seed=seeds)
def test_lm_stack(device: torch.device, placement: str, length: int, seed: int) -> None:
    check_lm_stack(build(DecoderOnlyStack, device, placement, seed), rand(seed, (2, length, 16), device))


@pytest.mark.claim("decoder.stack")
@pytest.mark.parametrize("mutant", [mut.UnchainedDecoder, mut.heterogeneous_decoder])
@pytest.mark.parametrize("placement", ["post", "pre"])
def test_stack_check_rejects_decoder_mutants(
    mutant: Callable[[TransformerConfig], Decoder], placement: str
) -> None:
    decoder = build(mutant, "cpu", placement, 0)
    with pytest.raises(AssertionError):
        check_decoder_stack(decoder, rand(0, (2, 4, 16), "cpu"), rand(1, (2, 3, 16), "cpu"))


@pytest.mark.claim("decoder.stack")
@pytest.mark.parametrize("placement", ["post", "pre"])
def test_stack_check_rejects_unchained_lm(placement: str) -> None:
    stack = build(mut.UnchainedDecoderOnlyStack, "cpu", placement, 0)
    with pytest.raises(AssertionError, match="in sequence"):
        check_lm_stack(stack, rand(0, (2, 4, 16), "cpu"))


# --------------------------------------------------------------------------- decoder.layer-sublayers


def sublayer_names(layer: nn.Module) -> list[str]:
    return [name for name, _ in layer.named_children() if name != "dropout"]


def check_decoder_layer(layer: DecoderLayer, x: Tensor, memory: Tensor) -> None:
    """Three residual sublayers in order: causal self-attention, cross-attention over ``memory``, FFN."""
    assert sublayer_names(layer) == ["self_attn", "norm_1", "cross_attn", "norm_2", "ffn", "norm_3"]
    placement = layer.config.norm_placement
    t = x.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
    with torch.no_grad():
        h = residual(x, lambda z: layer.self_attn(z, z, causal)[0], layer.norm_1, placement)
        h = residual(h, lambda z: layer.cross_attn(z, memory)[0], layer.norm_2, placement)
        h = residual(h, layer.ffn, layer.norm_3, placement)
        assert_close(layer(x, memory), h, f"{placement}-LN decoder layer recomputed sublayer by sublayer")


def check_encoder_layer(layer: EncoderLayer, x: Tensor) -> None:
    """Two residual sublayers in order: self-attention (no mask), FFN."""
    assert sublayer_names(layer) == ["self_attn", "norm_1", "ffn", "norm_2"]
    placement = layer.config.norm_placement
    with torch.no_grad():
        h = residual(x, lambda z: layer.self_attn(z, z)[0], layer.norm_1, placement)
        h = residual(h, layer.ffn, layer.norm_2, placement)
        assert_close(layer(x), h, f"{placement}-LN encoder layer recomputed sublayer by sublayer")


@pytest.mark.claim("decoder.layer-sublayers")
@given(placement=placements, tgt=st.integers(1, 5), src=st.integers(1, 5), seed=seeds)
def test_decoder_layer_sublayers(device: torch.device, placement: str, tgt: int, src: int, seed: int) -> None:
    layer = build(DecoderLayer, device, placement, seed)
    check_decoder_layer(layer, rand(seed, (2, tgt, 16), device), rand(seed + 1, (2, src, 16), device))


@pytest.mark.claim("decoder.layer-sublayers")
@given(placement=placements, length=st.integers(1, 5), seed=seeds)
def test_encoder_layer_sublayers(device: torch.device, placement: str, length: int, seed: int) -> None:
    check_encoder_layer(build(EncoderLayer, device, placement, seed), rand(seed, (2, length, 16), device))


@pytest.mark.claim("decoder.layer-sublayers")
@pytest.mark.parametrize("placement", ["post", "pre"])
def test_sublayer_checks_reject_mutants(placement: str) -> None:
    decoder_layer = build(mut.CrossFirstDecoderLayer, "cpu", placement, 0)
    with pytest.raises(AssertionError, match="decoder layer"):
        check_decoder_layer(decoder_layer, rand(0, (2, 4, 16), "cpu"), rand(1, (2, 3, 16), "cpu"))
    encoder_layer = build(mut.ThreeSublayerEncoderLayer, "cpu", placement, 0)
    with pytest.raises(AssertionError, match="encoder layer"):
        check_encoder_layer(encoder_layer, rand(0, (2, 4, 16), "cpu"))
