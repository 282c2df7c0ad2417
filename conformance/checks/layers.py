"""Checks of whole encoder and decoder layers: shapes, padding, batch independence, causality,
cross-attention over a permuted memory, residual placement, and a differential run against the
reference layer carrying the same canonical weights.

Inputs are adversarial by default: a length-1 sample next to a full-length one, left and right
padding, pad rows filled with 1e10 (or NaN in the ``*-nan`` checks), samples of different lengths in
one batch. Pad masks are canonical (True = real token) and reach the target through
``ctx.to_target_mask``; only real positions are compared (pad positions carry no contract).

The helpers at the top (config, lengths, canonical weights, oracle copies) are shared with
``conformance/checks/models.py``.
"""

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from hypothesis import strategies as st
from torch import Tensor, nn

from transformer_conformance.adapter import Capability
from transformer_conformance.checks.inputs import require_isolated_nonfinite, require_zero_policy
from transformer_conformance.context import CheckContext, NotApplicable
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.decoder import DecoderLayer
from transformer_conformance.reference.encoder import EncoderLayer
from transformer_conformance.reference.layernorm import layer_norm
from transformer_conformance.reference.masks import padding_mask_from_lengths
from transformer_conformance.registry import check
from transformer_conformance.search import search
from transformer_conformance.strategies import Example, padded_batch_example, sizes_example

ENC = Capability.ENCODER_LAYER
DEC = Capability.DECODER_LAYER
Side = Literal["right", "left"]
SIDES: tuple[Side, ...] = ("right", "left")

# --------------------------------------------------------------------------------------------
# shared helpers (also used by models.py)
# --------------------------------------------------------------------------------------------


def layer_config(ctx: CheckContext, **overrides: Any) -> TransformerConfig:
    """The tiny config in the target's declared architecture, residual placement and LayerNorm eps; at
    the first declared head width (``Conventions.supported_d_heads``: d_model = 4 heads of it), with the
    config fields the target fixes (``Adapter.config_fields``)."""
    conv = ctx.conventions
    fields: dict[str, Any] = {
        "norm_placement": conv.norm_placement,
        "eps": conv.layer_norm_eps,
        "arch": ctx.architecture,
        **ctx.adapter.config_fields,
    }
    if conv.supported_d_heads:
        d_head = conv.supported_d_heads[0]
        fields.update(d_model=4 * d_head, d_ff=8 * d_head)
    fields.update(overrides)
    return TransformerConfig.tiny(**fields)


def require_notes_architecture(ctx: CheckContext, cfg: TransformerConfig, what: str) -> None:
    """NotApplicable when the declared architecture is not the notes' one: the reference ``what`` (an
    encoder or decoder layer, the encoder-decoder) speaks only that architecture."""
    if cfg.arch != Architecture():
        raise NotApplicable(
            f"target {ctx.adapter.name!r} declares a non-default architecture ({cfg.arch}); the reference "
            f"{what} is built in the notes' architecture only"
        )


def draw_int(ctx: CheckContext, low: int, high: int) -> int:
    """One integer in ``[low, high]`` from the check's generator."""
    return int(torch.randint(low, high + 1, (1,), generator=ctx.generator))


def mixed_lengths(ctx: CheckContext, batch: int, length: int) -> list[int]:
    """Different lengths in one batch: a length-1 sample, a full one, the rest random in [1, length]."""
    fixed = [1, length][:batch]
    return fixed + [draw_int(ctx, 1, length) for _ in range(batch - len(fixed))]


def keep_from_lengths(ctx: CheckContext, lengths: list[int], length: int, side: Side) -> Tensor:
    """Canonical padding mask [b, length] (True = real token) on ``ctx.device``."""
    lens = torch.tensor(lengths, dtype=torch.int64, device=ctx.device)
    keep: Tensor = padding_mask_from_lengths(lens, length, side=side)
    return keep


def huge(dtype: torch.dtype) -> float:
    """Finite pad filler far beyond real activations (1e10, or the dtype's max / 4 for half types)."""
    return min(1e10, float(torch.finfo(dtype).max) / 4)


def fill_rows(x: Tensor, hidden: Tensor, value: float) -> Tensor:
    """Copy of ``x`` [b, l, d] with the rows where ``hidden`` [b, l] is True set to ``value``."""
    return torch.where(hidden.unsqueeze(-1), torch.full_like(x, value), x)


def batch_keep(ctx: CheckContext, lengths: list[int], length: int, side: str) -> Tensor:
    """Canonical padding mask [b, length] on ``ctx.device``: every sample padded on ``side`` ("right",
    "left"), or "mixed" (``strategies.BATCH_SIDES``): even samples right-, odd samples left-padded."""
    if side in SIDES:
        return keep_from_lengths(ctx, lengths, length, "left" if side == "left" else "right")
    right = keep_from_lengths(ctx, lengths, length, "right")
    left = keep_from_lengths(ctx, lengths, length, "left")
    odd = (torch.arange(len(lengths), device=ctx.device) % 2 == 1).unsqueeze(-1)
    return torch.where(odd, left, right)


def example_keep(ctx: CheckContext, example: Example, dim: str) -> Tensor | None:
    """The padding mask of a ``padded_batch_example`` along ``dim`` (its ``"<dim>_lens"`` on its
    ``side``); None when the example is unpadded (side "none")."""
    if example.get("side", "none") == "none":
        return None
    return batch_keep(ctx, example[f"{dim}_lens"], example[dim], example["side"])


@contextmanager
def _own_rng() -> Iterator[None]:
    """Construct reference modules without disturbing the global RNG stream."""
    with torch.random.fork_rng(devices=[]):
        yield


def canonical_module(ctx: CheckContext, factory: Callable[[], nn.Module]) -> nn.Module:
    """A reference module whose parameters are redrawn (float64, CPU) from the check's generator.

    Matrices get ``N(0, 1/fan_in)``, LayerNorm gains ``1 + N(0, 0.1^2)``, biases ``N(0, 0.1^2)``: nothing
    is an identity, so a wrongly mapped parameter shows.
    """
    with _own_rng():
        module = factory()
    module = module.to(torch.float64).eval()
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=ctx.generator, dtype=torch.float64)
            if param.dim() >= 2:
                param.copy_(noise / param.shape[-1] ** 0.5)
            elif name.endswith("weight"):
                param.copy_(1.0 + 0.1 * noise)
            else:
                param.copy_(0.1 * noise)
    return module


def state_of(ctx: CheckContext, module: nn.Module) -> dict[str, Tensor] | None:
    """The module's canonical ``state_dict`` in ``ctx.dtype`` on ``ctx.device``, or ``None`` when the
    target declares it cannot load weights (it then uses its own random weights)."""
    if not ctx.conventions.loads_weights:
        return None
    return {
        k: v.detach().to(device=ctx.device, dtype=ctx.dtype if v.is_floating_point() else v.dtype).clone()
        for k, v in module.state_dict().items()
    }


def oracle_copies(ctx: CheckContext, module: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(float64 oracle, same-dtype reference) copies of ``module`` on ``ctx.device``, in eval mode."""
    oracle = copy.deepcopy(module).to(device=ctx.device, dtype=torch.float64).eval()
    same = copy.deepcopy(module).to(device=ctx.device, dtype=ctx.dtype).eval()
    return oracle, same


def require_weights(ctx: CheckContext) -> None:
    """NotApplicable unless the target can take the canonical reference weights."""
    if not ctx.conventions.loads_weights:
        raise NotApplicable(f"target {ctx.adapter.name!r} declares loads_weights=False")


def expect_tensor(ctx: CheckContext, what: str, y: Any, shape: tuple[int, ...]) -> Tensor:
    """Shape and dtype of a target output (dtype must be ``ctx.dtype``); returns it detached."""
    ctx.expect_shape(what, y, shape)
    tensor: Tensor = y
    ctx.expect_dtype(what, tensor, ctx.dtype)
    return tensor.detach()


def same_rows(ctx: CheckContext, what: str, actual: Tensor, expected: Tensor, keep: Tensor | None) -> None:
    """Direct-rule comparison of ``actual`` with ``expected`` at the real positions (``keep`` True)."""
    if keep is not None:
        actual, expected = actual[keep], expected[keep]
    ctx.compare_direct(what, actual, expected.detach().to(torch.float64))


@torch.no_grad()
def run_oracle(fn: Callable[..., Tensor], *args: Any) -> Tensor:
    """Run a reference module without autograd."""
    return fn(*args)


# --------------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------------


def build_encoder(ctx: CheckContext, cfg: TransformerConfig) -> tuple[Callable[..., Any], nn.Module]:
    """(target encoder layer, canonical reference layer in float64 on CPU) for ``cfg``."""
    require_notes_architecture(ctx, cfg, "encoder layer")
    module = canonical_module(ctx, lambda: EncoderLayer(cfg))
    layer = ctx.call(ctx.adapter.build_encoder_layer, cfg, state_of(ctx, module), ctx.device, ctx.dtype)
    return layer, module


def build_decoder(ctx: CheckContext, cfg: TransformerConfig) -> tuple[Callable[..., Any], nn.Module]:
    """(target decoder layer, canonical reference layer in float64 on CPU) for ``cfg``."""
    require_notes_architecture(ctx, cfg, "decoder layer")
    module = canonical_module(ctx, lambda: DecoderLayer(cfg))
    layer = ctx.call(ctx.adapter.build_decoder_layer, cfg, state_of(ctx, module), ctx.device, ctx.dtype)
    return layer, module


def enc_call(ctx: CheckContext, layer: Callable[..., Any], x: Tensor, keep: Tensor | None) -> Tensor:
    """Call the target encoder layer and check the output's shape and dtype."""
    ctx.record(x=x, pad_mask=keep)
    y = ctx.call(layer, x, ctx.to_target_mask(keep))
    return expect_tensor(ctx, "encoder layer output", y, tuple(x.shape))


def dec_call(
    ctx: CheckContext,
    layer: Callable[..., Any],
    x: Tensor,
    memory: Tensor,
    tgt_keep: Tensor | None,
    mem_keep: Tensor | None,
) -> Tensor:
    """Call the target decoder layer and check the output's shape and dtype."""
    ctx.record(x=x, memory=memory, tgt_pad=tgt_keep, mem_pad=mem_keep)
    y = ctx.call(layer, x, memory, ctx.to_target_mask(tgt_keep), ctx.to_target_mask(mem_keep))
    return expect_tensor(ctx, "decoder layer output", y, tuple(x.shape))


def zero_sublayers(module: nn.Module, names: tuple[str, ...]) -> None:
    """Zero the output projections named (weights and biases) and reset every LayerNorm to identity."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.startswith(names):
                param.zero_()
            elif "." in name and name.split(".")[-2].startswith("norm"):
                param.fill_(1.0 if name.endswith("weight") else 0.0)


# --------------------------------------------------------------------------------------------
# encoder layer
# --------------------------------------------------------------------------------------------


# A layer is built from multi-head attention, LayerNorm and the FFN: a failure of one of those (when the
# target declares it) blocks the layer checks instead of cascading into them.
COMPONENT_CHECKS = ("mha.differential", "layernorm.differential", "ffn.differential")


@check(
    "encoder_layer.shape",
    claims=("encoder.output-per-position",),
    needs=(ENC,),
    depends_on=COMPONENT_CHECKS,
    kind="structural",
)
def encoder_layer_shape(ctx: CheckContext) -> None:
    """n input vectors give n finite output vectors of width d_model, with and without a padding mask,
    for length 1 and for a padded batch."""
    cfg = layer_config(ctx)
    layer, _ = build_encoder(ctx, cfg)

    def prop(example: Example) -> None:
        b, n = example["b"], example["n"]
        x = ctx.randn(b, n, cfg.d_model)
        ctx.expect_finite("encoder layer output (no mask)", enc_call(ctx, layer, x, None))
        keep = keep_from_lengths(ctx, mixed_lengths(ctx, b, n), n, "right")
        y = enc_call(ctx, layer, x, keep)
        ctx.expect_finite("encoder layer output at real positions", y[keep])

    fixed = [{"b": 1, "n": 1}, {"b": 3, "n": 5}]
    search(ctx, prop, fixed=fixed, strategy=sizes_example(b=(1, 4), n=(1, 7)))


def _pad_invariance(ctx: CheckContext, fills: Callable[[Tensor], list[float]], enc: bool) -> None:
    cfg = layer_config(ctx)
    if enc:
        layer, _ = build_encoder(ctx, cfg)
    else:
        layer, _ = build_decoder(ctx, cfg)

    def prop(example: Example) -> None:
        side, b, n, s = example["side"], example["b"], example["n"], example["s"]
        keep = keep_from_lengths(ctx, mixed_lengths(ctx, b, n), n, side)
        mem_keep = keep_from_lengths(ctx, mixed_lengths(ctx, b, s), s, side)
        x = ctx.randn(b, n, cfg.d_model)
        memory = ctx.randn(b, s, cfg.d_model)
        base = enc_call(ctx, layer, x, keep) if enc else dec_call(ctx, layer, x, memory, keep, mem_keep)
        for value in fills(x):
            x2 = fill_rows(x, ~keep, value)
            if enc:
                y = enc_call(ctx, layer, x2, keep)
            else:
                y = dec_call(ctx, layer, x2, fill_rows(memory, ~mem_keep, value), keep, mem_keep)
            same_rows(ctx, f"{side}-padded batch, pad rows set to {value:g}: real positions", y, base, keep)

    # each side at 4 x 6 (memory 5), then sides and sizes drawn by hypothesis (shrunk on failure)
    fixed = [{"side": side, "b": 4, "n": 6, "s": 5} for side in SIDES]
    sizes = sizes_example(b=(2, 4), n=(2, 7), s=(2, 6))
    drawn = st.tuples(sizes, st.sampled_from(SIDES)).map(lambda pair: {**pair[0], "side": pair[1]})
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=max(1, ctx.examples // 2))


@check(
    "encoder_layer.padding-invariance",
    claims=("mask.padding.invariance", "mask.padding.pad-value-arbitrary"),
    needs=(ENC,),
    depends_on=("encoder_layer.shape",),
    kind="metamorphic",
)
def encoder_layer_padding(ctx: CheckContext) -> None:
    """Pad rows set to 1e10, -1e10 or 0 change nothing at real positions (left and right padding,
    lengths 1..n in one batch)."""
    _pad_invariance(ctx, lambda x: [huge(x.dtype), -huge(x.dtype), 0.0], enc=True)


@check(
    "encoder_layer.padding-nan",
    claims=("mask.padding.nonfinite-isolated",),
    needs=(ENC,),
    depends_on=("encoder_layer.padding-invariance",),
    kind="metamorphic",
)
def encoder_layer_padding_nan(ctx: CheckContext) -> None:
    """NaN in pad rows (e.g. NaN embeddings of a pad id) changes nothing at real positions."""
    require_isolated_nonfinite(ctx)
    _pad_invariance(ctx, lambda x: [float("nan")], enc=True)


def _batch_independence(ctx: CheckContext, enc: bool) -> None:
    cfg = layer_config(ctx)
    layer, _ = build_encoder(ctx, cfg) if enc else build_decoder(ctx, cfg)
    dim = "n" if enc else "t"

    def run(xx: Tensor, mm: Tensor, kk: Tensor | None, mk: Tensor | None) -> Tensor:
        return enc_call(ctx, layer, xx, kk) if enc else dec_call(ctx, layer, xx, mm, kk, mk)

    def prop(example: Example) -> None:
        b, n, s, side = example["b"], example[dim], example.get("s", 1), example["side"]
        keep = batch_keep(ctx, example[f"{dim}_lens"], n, side)
        mem_keep = batch_keep(ctx, example["s_lens"], s, side) if not enc else None
        x, memory = ctx.randn(b, n, cfg.d_model), ctx.randn(b, s, cfg.d_model)
        together = run(x, memory, keep, mem_keep)
        for i in range(b):
            alone = run(
                x[i : i + 1],
                memory[i : i + 1],
                keep[i : i + 1],
                None if mem_keep is None else mem_keep[i : i + 1],
            )
            same_rows(ctx, f"sample {i} alone vs in the batch", alone[0], together[i], keep[i])
        # Other samples replaced by new content with other lengths: sample 0 must not move.
        others = batch_keep(ctx, [example[f"{dim}_lens"][0], *example[f"{dim}_others"]], n, side)
        mem_others = None if enc else batch_keep(ctx, [example["s_lens"][0], *example["s_others"]], s, side)
        x2, m2 = ctx.randn(b, n, cfg.d_model), ctx.randn(b, s, cfg.d_model)
        x2[0], m2[0] = x[0], memory[0]
        changed = run(x2, m2, others, mem_others)
        same_rows(ctx, "sample 0 after changing the other samples", changed[0], together[0], keep[0])

    # the former fixed batch (lengths 3, 1, n, 2; others n, 1, 1), then batches drawn by hypothesis:
    # sizes, each sample's length, the other samples' new lengths, the padding side
    if enc:
        fixed: list[Example] = [
            {"b": 4, "n": 5, "side": "right", "n_lens": [3, 1, 5, 2], "n_others": [5, 1, 1]}
        ]
        dims = {"n": (1, 7)}
    else:
        lens = {"t_lens": [3, 1, 5, 2], "t_others": [5, 1, 1], "s_lens": [4, 2, 1, 3], "s_others": [1, 4, 1]}
        fixed = [{"b": 4, "t": 5, "s": 4, "side": "right", **lens}]
        dims = {"t": (1, 7), "s": (1, 6)}
    drawn = padded_batch_example(batch=(2, 4), dims=dims, others=True)
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


@check(
    "encoder_layer.batch-independence",
    claims=("batch.independence",),
    needs=(ENC,),
    depends_on=("encoder_layer.shape",),
    kind="metamorphic",
)
def encoder_layer_batch(ctx: CheckContext) -> None:
    """Each sample's output equals its output alone and ignores other samples' content and lengths."""
    _batch_independence(ctx, enc=True)


@check(
    "encoder_layer.fully-padded-neighbour",
    claims=("batch.independence",),
    needs=(ENC,),
    depends_on=("encoder_layer.shape",),
    kind="metamorphic",
)
def encoder_layer_fully_padded_neighbour(ctx: CheckContext) -> None:
    """A sample with no real token beside normal ones: each normal one equals its output alone (whatever
    the target's declared convention for the empty sample)."""
    cfg = layer_config(ctx)
    layer, _ = build_encoder(ctx, cfg)

    def prop(example: Example) -> None:
        b, n, lens = example["b"], example["n"], example["n_lens"]
        keep = batch_keep(ctx, lens, n, example["side"])
        x = ctx.randn(b, n, cfg.d_model)
        y = enc_call(ctx, layer, x, keep)
        for i in (i for i in range(b) if lens[i]):
            alone = enc_call(ctx, layer, x[i : i + 1], keep[i : i + 1])
            same_rows(ctx, f"sample {i} beside a fully padded one vs alone", y[i], alone[0], keep[i])

    search(ctx, prop, fixed=[EMPTY_NEIGHBOUR], strategy=EMPTY_SAMPLE, examples=ctx.model_examples)


#: A length-3 sample beside an empty one (the fixed case of the fully padded checks), then batches of
#: 2..4 samples of which one is empty, drawn by hypothesis (sizes, lengths, side).
EMPTY_NEIGHBOUR: Example = {"b": 2, "n": 4, "side": "right", "n_lens": [3, 0]}
EMPTY_SAMPLE = padded_batch_example(batch=(2, 4), dims={"n": (1, 6)}, empty=True)


@check(
    "encoder_layer.fully-padded-sample",
    claims=("attention.fully-masked-row",),
    needs=(ENC,),
    # judged against the reference layer: a layer formula bug is reported by encoder_layer.reference
    depends_on=("encoder_layer.shape", "encoder_layer.reference"),
    kind="structural",
)
def encoder_layer_fully_padded(ctx: CheckContext) -> None:
    """Project policy (declared fully_masked_row='zero'): a sample with no real token gets finite outputs
    and, with canonical weights, the reference's outputs (its attention rows are exactly 0). Targets
    declaring another convention are not-applicable: they do not claim the policy."""
    require_zero_policy(ctx)
    cfg = layer_config(ctx)
    layer, module = build_encoder(ctx, cfg)
    oracle, same = oracle_copies(ctx, module)

    def prop(example: Example) -> None:
        b, n = example["b"], example["n"]
        keep = batch_keep(ctx, example["n_lens"], n, example["side"])
        empty = ~keep.any(dim=-1)
        x = ctx.randn(b, n, cfg.d_model)
        y = enc_call(ctx, layer, x, keep)
        ctx.expect_finite("output of a fully padded sample", y[empty])
        if not ctx.conventions.loads_weights:
            return
        want = run_oracle(oracle, x.to(torch.float64), keep)
        base = run_oracle(same, x, keep)
        ctx.compare("fully padded sample vs reference (attention rows 0)", y[empty], want[empty], base[empty])

    search(ctx, prop, fixed=[EMPTY_NEIGHBOUR], strategy=EMPTY_SAMPLE, examples=ctx.model_examples)


def _residual(ctx: CheckContext, enc: bool) -> None:
    require_weights(ctx)
    cfg = layer_config(ctx)
    factory: Callable[[], nn.Module] = (lambda: EncoderLayer(cfg)) if enc else (lambda: DecoderLayer(cfg))
    module = canonical_module(ctx, factory)
    outputs = ("self_attn.w_o", "ffn.w_2") if enc else ("self_attn.w_o", "cross_attn.w_o", "ffn.w_2")
    zero_sublayers(module, outputs)
    state = state_of(ctx, module)
    build = ctx.adapter.build_encoder_layer if enc else ctx.adapter.build_decoder_layer
    layer = ctx.call(build, cfg, state, ctx.device, ctx.dtype)
    dim = "n" if enc else "t"

    def prop(example: Example) -> None:
        b, n, s = example["b"], example[dim], example.get("s", 1)
        x = ctx.randn(b, n, cfg.d_model, scale=3.0) + 2.0  # off-centre, not unit scale: LN visibly changes it
        memory = ctx.randn(b, s, cfg.d_model)
        y = enc_call(ctx, layer, x, None) if enc else dec_call(ctx, layer, x, memory, None, None)
        expected = x.to(torch.float64)
        if cfg.norm_placement == "post":
            for _ in range(2 if enc else 3):
                expected = layer_norm(expected, None, None, cfg.eps)
            what = "post-LN with zero sublayer outputs: LayerNorm applied after each residual sum"
        else:
            what = "pre-LN with zero sublayer outputs: the residual stream passes through unchanged"
        ctx.compare_direct(what, y, expected)

    # the former 2 x 4 (memory 3), then sizes drawn by hypothesis
    if enc:
        fixed: list[Example] = [{"b": 2, "n": 4}]
        drawn = sizes_example(b=(1, 3), n=(1, 6))
    else:
        fixed = [{"b": 2, "t": 4, "s": 3}]
        drawn = sizes_example(b=(1, 3), t=(1, 6), s=(1, 5))
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


@check(
    "encoder_layer.residual-placement",
    claims=("residual.post-ln", "residual.adds-update"),
    needs=(ENC,),
    depends_on=("encoder_layer.shape",),
    kind="structural",
)
def encoder_layer_residual(ctx: CheckContext) -> None:
    """With both sublayers' output projections zeroed and identity LayerNorms, a post-LN layer returns
    LayerNorm(LayerNorm(x)) and a pre-LN layer returns x itself (the update is added, not substituted)."""
    _residual(ctx, enc=True)


@check(
    "encoder_layer.reference",
    claims=("encoder.output-per-position", "residual.post-ln", "attention.self.same-input"),
    needs=(ENC,),
    depends_on=("encoder_layer.shape",),
    kind="differential",
)
def encoder_layer_reference(ctx: CheckContext) -> None:
    """Same canonical weights, same padded input: real positions match the float64 reference within the
    differential tolerance (reference in the target's dtype as the baseline)."""
    require_weights(ctx)
    cfg = layer_config(ctx)
    layer, module = build_encoder(ctx, cfg)
    oracle, same = oracle_copies(ctx, module)

    def prop(example: Example) -> None:
        b, n, side = example["b"], example["n"], example["side"]
        keep = batch_keep(ctx, example["n_lens"], n, side)
        x = ctx.randn(b, n, cfg.d_model)
        y = enc_call(ctx, layer, x, keep)
        want = run_oracle(oracle, x.to(torch.float64), keep)
        base = run_oracle(same, x, keep)
        ctx.compare(f"{side}-padded batch vs reference", y[keep], want[keep], base[keep])

    # each side at 3 x 6 (lengths 1, 6, 4), then batches drawn by hypothesis (sizes, lengths, side)
    fixed: list[Example] = [{"b": 3, "n": 6, "side": side, "n_lens": [1, 6, 4]} for side in SIDES]
    drawn = padded_batch_example(dims={"n": (1, 7)})
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


# --------------------------------------------------------------------------------------------
# decoder layer
# --------------------------------------------------------------------------------------------


@check(
    "decoder_layer.shape",
    claims=("encdec.output-length-independent",),
    needs=(DEC,),
    depends_on=COMPONENT_CHECKS,
    kind="structural",
)
def decoder_layer_shape(ctx: CheckContext) -> None:
    """Output has the target's shape [b, t, d_model] whatever the memory length (t=1, s=1; t != s),
    with and without padding masks."""
    cfg = layer_config(ctx)
    layer, _ = build_decoder(ctx, cfg)

    def prop(example: Example) -> None:
        b, t, s = example["b"], example["t"], example["s"]
        x, memory = ctx.randn(b, t, cfg.d_model), ctx.randn(b, s, cfg.d_model)
        ctx.expect_finite("decoder layer output (no masks)", dec_call(ctx, layer, x, memory, None, None))
        keep = keep_from_lengths(ctx, mixed_lengths(ctx, b, t), t, "right")
        mem_keep = keep_from_lengths(ctx, mixed_lengths(ctx, b, s), s, "right")
        y = dec_call(ctx, layer, x, memory, keep, mem_keep)
        ctx.expect_finite("decoder layer output at real positions", y[keep])

    fixed = [{"b": 1, "t": 1, "s": 1}, {"b": 3, "t": 5, "s": 2}, {"b": 2, "t": 2, "s": 6}]
    search(ctx, prop, fixed=fixed, strategy=sizes_example(b=(1, 4), t=(1, 7), s=(1, 7)))


@check(
    "decoder_layer.padding-invariance",
    claims=("mask.padding.invariance", "mask.padding.pad-value-arbitrary"),
    needs=(DEC,),
    depends_on=("decoder_layer.shape",),
    kind="metamorphic",
)
def decoder_layer_padding(ctx: CheckContext) -> None:
    """Target and memory pad rows set to 1e10, -1e10 or 0 change nothing at real target positions."""
    _pad_invariance(ctx, lambda x: [huge(x.dtype), -huge(x.dtype), 0.0], enc=False)


@check(
    "decoder_layer.padding-nan",
    claims=("mask.padding.nonfinite-isolated",),
    needs=(DEC,),
    depends_on=("decoder_layer.padding-invariance",),
    kind="metamorphic",
)
def decoder_layer_padding_nan(ctx: CheckContext) -> None:
    """NaN in target and memory pad rows changes nothing at real target positions."""
    require_isolated_nonfinite(ctx)
    _pad_invariance(ctx, lambda x: [float("nan")], enc=False)


@check(
    "decoder_layer.batch-independence",
    claims=("batch.independence",),
    needs=(DEC,),
    depends_on=("decoder_layer.shape",),
    kind="metamorphic",
)
def decoder_layer_batch(ctx: CheckContext) -> None:
    """Each sample's output equals its output alone and ignores other samples' content and lengths."""
    _batch_independence(ctx, enc=False)


@check(
    "decoder_layer.causality",
    claims=("mask.causal.future-blind",),
    needs=(DEC,),
    depends_on=("decoder_layer.shape",),
    kind="metamorphic",
)
def decoder_layer_causality(ctx: CheckContext) -> None:
    """Changing target positions >= c leaves outputs at positions < c unchanged (c = 1 .. t-1).

    The diagonal (mask.causal.diagonal-visible) is not judged here: the layer input at position c
    reaches output c through the residual whatever the mask does, so no perturbation of the layer
    input can show that c attends to itself. A hidden diagonal is caught by ``decoder_layer.reference``
    (differential) and, at the attention level, by ``mask.causal.diagonal-visible``.
    """
    cfg = layer_config(ctx)
    layer, _ = build_decoder(ctx, cfg)

    def prop(example: Example) -> None:
        b, t, s, cut = example["b"], example["t"], example["s"], example["cut"]
        keep, mem_keep = example_keep(ctx, example, "t"), example_keep(ctx, example, "s")
        x, memory = ctx.randn(b, t, cfg.d_model), ctx.randn(b, s, cfg.d_model)
        base = dec_call(ctx, layer, x, memory, keep, mem_keep)
        x2 = x.clone()
        x2[:, cut:] = ctx.randn(b, t - cut, cfg.d_model, scale=5.0)
        y = dec_call(ctx, layer, x2, memory, keep, mem_keep)
        same_rows(
            ctx,
            f"outputs before position {cut} after changing positions >= {cut}",
            y[:, :cut],
            base[:, :cut],
            None if keep is None else keep[:, :cut],
        )

    # every cut of the former unpadded 2 x 6 (memory 3), then drawn by hypothesis: sizes, the cut,
    # unpadded or padded (each sample's target and memory length, the side)
    fixed: list[Example] = [{"b": 2, "t": 6, "s": 3, "side": "none", "cut": cut} for cut in range(1, 6)]
    cuts = {"cut": lambda e: st.integers(1, e["t"] - 1)}
    drawn = padded_batch_example(
        batch=(1, 3), dims={"t": (2, 7), "s": (1, 5)}, sides=("none", *SIDES), extras=cuts
    )
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


@check(
    "decoder_layer.memory-permutation",
    claims=("attention.cross.memory-permutation-invariant", "attention.cross.no-causal-mask"),
    needs=(DEC,),
    depends_on=("decoder_layer.shape",),
    kind="metamorphic",
)
def decoder_layer_memory_permutation(ctx: CheckContext) -> None:
    """Permuting the memory positions together with its padding mask leaves every output unchanged (no
    causal mask and no positional bias in cross-attention)."""
    cfg = layer_config(ctx)
    layer, _ = build_decoder(ctx, cfg)

    def prop(example: Example) -> None:
        b, t, s = example["b"], example["t"], example["s"]
        mem_keep = batch_keep(ctx, example["s_lens"], s, example["side"])
        x, memory = ctx.randn(b, t, cfg.d_model), ctx.randn(b, s, cfg.d_model)
        base = dec_call(ctx, layer, x, memory, None, mem_keep)
        perm = torch.tensor(example["perm"], dtype=torch.int64, device=ctx.device)
        if bool((perm == torch.arange(s, device=ctx.device)).all()):
            perm = perm.roll(1)
        y = dec_call(ctx, layer, x, memory[:, perm], None, mem_keep[:, perm])
        same_rows(ctx, f"outputs with memory permuted by {perm.tolist()}", y, base, None)

    # the former 3 x 4 batch over a memory of 6 (lengths 6, 1, 4), then drawn by hypothesis: sizes,
    # memory lengths, padding side and the permutation (the identity is rotated by one)
    fixed: list[Example] = [
        {"b": 3, "t": 4, "s": 6, "side": "right", "s_lens": [6, 1, 4], "perm": [3, 0, 5, 1, 4, 2]}
    ]
    perms = {"perm": lambda e: st.permutations(list(range(e["s"])))}
    drawn = padded_batch_example(dims={"t": (1, 6), "s": (2, 7)}, padded=("s",), extras=perms)
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)


@check(
    "decoder_layer.residual-placement",
    claims=("residual.post-ln", "residual.adds-update"),
    needs=(DEC,),
    depends_on=("decoder_layer.shape",),
    kind="structural",
)
def decoder_layer_residual(ctx: CheckContext) -> None:
    """With all three sublayers' output projections zeroed and identity LayerNorms, post-LN gives
    LayerNorm applied three times and pre-LN gives x itself."""
    _residual(ctx, enc=False)


@check(
    "decoder_layer.reference",
    claims=("attention.cross.sources", "residual.post-ln"),
    needs=(DEC,),
    depends_on=("decoder_layer.shape",),
    kind="differential",
)
def decoder_layer_reference(ctx: CheckContext) -> None:
    """Same canonical weights, padded target and memory: real positions match the float64 reference
    (self-attention on the target with a causal mask, cross-attention on the memory)."""
    require_weights(ctx)
    cfg = layer_config(ctx)
    layer, module = build_decoder(ctx, cfg)
    oracle, same = oracle_copies(ctx, module)

    def prop(example: Example) -> None:
        b, t, s, side = example["b"], example["t"], example["s"], example["side"]
        keep = batch_keep(ctx, example["t_lens"], t, side)
        mem_keep = batch_keep(ctx, example["s_lens"], s, side)
        x, memory = ctx.randn(b, t, cfg.d_model), ctx.randn(b, s, cfg.d_model)
        y = dec_call(ctx, layer, x, memory, keep, mem_keep)
        want = run_oracle(oracle, x.to(torch.float64), memory.to(torch.float64), keep, mem_keep)
        base = run_oracle(same, x, memory, keep, mem_keep)
        ctx.compare(f"{side}-padded batch vs reference", y[keep], want[keep], base[keep])

    # each side at 3 x 5 over a memory of 6, then batches drawn by hypothesis (sizes, lengths, side)
    fixed: list[Example] = [
        {"b": 3, "t": 5, "s": 6, "side": side, "t_lens": [1, 5, 3], "s_lens": [1, 6, 4]} for side in SIDES
    ]
    drawn = padded_batch_example(dims={"t": (1, 7), "s": (1, 7)})
    search(ctx, prop, fixed=fixed, strategy=drawn, examples=ctx.model_examples)
