"""Fake targets and isolated check registries for the framework tests (no built-in checks used).

Each fake adapter plants one failure mode: raising, hanging, wrong shape, NaN output, or a hard
crash of the whole process (for the streamed-report test).
"""

import os
import threading

import torch
from torch import Tensor

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.context import CheckContext, FailureKind
from transformer_conformance.registry import Registry

ATTN = Capability.ATTENTION


def softmax_attention(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Plain softmax(q k^T / sqrt(d)) v, computed in the inputs' dtype."""
    weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
    return weights @ v, weights


class GoodAdapter(Adapter):
    """Correct attention; declares nothing else."""

    name = "fake-good"
    capabilities = frozenset({ATTN})

    def attention(self, q, k, v, *, mask, is_causal):
        return softmax_attention(q, k, v)


class RaisingAdapter(GoodAdapter):
    name = "fake-raising"

    def attention(self, q, k, v, *, mask, is_causal):
        raise RuntimeError("kernel exploded")


HANG_RELEASE = threading.Event()


class HangingAdapter(GoodAdapter):
    name = "fake-hanging"

    def attention(self, q, k, v, *, mask, is_causal):
        HANG_RELEASE.wait(20.0)  # far past the test's time limit; released at teardown
        return softmax_attention(q, k, v)


class WrongShapeAdapter(GoodAdapter):
    name = "fake-wrong-shape"

    def attention(self, q, k, v, *, mask, is_causal):
        out, weights = softmax_attention(q, k, v)
        return out.transpose(-2, -1), weights


class NaNAdapter(GoodAdapter):
    name = "fake-nan"

    def attention(self, q, k, v, *, mask, is_causal):
        out, weights = softmax_attention(q, k, v)
        return out * float("nan"), weights


class Float64OnlyAdapter(GoodAdapter):
    name = "fake-f64-only"
    conventions = Conventions(dtypes=(torch.float64,))


class BrokenDeclarationAdapter(Adapter):
    """Declares LAYER_NORM but never overrides build_layer_norm."""

    name = "fake-broken-declaration"
    capabilities = frozenset({ATTN, Capability.LAYER_NORM})

    def attention(self, q, k, v, *, mask, is_causal):
        return softmax_attention(q, k, v)


class CrashingAdapter(GoodAdapter):
    """Kills the whole process on its third call (simulates a segfault mid-run)."""

    name = "fake-crashing"
    calls = 0

    def attention(self, q, k, v, *, mask, is_causal):
        CrashingAdapter.calls += 1
        if CrashingAdapter.calls >= 3:
            os._exit(3)
        return softmax_attention(q, k, v)


def make_good() -> Adapter:
    return GoodAdapter()


def make_nan() -> Adapter:
    return NaNAdapter()


def make_crashing() -> Adapter:
    return CrashingAdapter()


def make_not_an_adapter() -> object:
    return object()


# ---------------------------------------------------------------------------------------------
# Registries: tiny dummy checks (claim IDs from the draft list)
# ---------------------------------------------------------------------------------------------

REGISTRY = Registry()


@REGISTRY.check("dummy.attention", claims=("attention.formula",), needs=(ATTN,), kind="differential")
def dummy_attention(ctx: CheckContext) -> None:
    """Output of shape [1, 2, 3, 4], finite, close to a float64 oracle."""
    q, k, v = ctx.randn(1, 2, 3, 4), ctx.randn(1, 2, 5, 4), ctx.randn(1, 2, 5, 4)
    ctx.record(q=q, k=k, v=v)
    out, _ = ctx.call(ctx.adapter.attention, q, k, v, mask=None, is_causal=False)
    ctx.expect_shape("output", out, (1, 2, 3, 4))
    ctx.expect_dtype("output", out, ctx.dtype)
    ctx.expect_finite("output", out)
    oracle, _ = softmax_attention(q.double(), k.double(), v.double())
    same, _ = softmax_attention(q, k, v)
    ctx.compare("output", out, oracle, same)


@REGISTRY.check(
    "dummy.rows",
    claims=("attention.weights.rows-sum-to-one",),
    needs=(ATTN,),
    depends_on=("dummy.attention",),
    kind="structural",
)
def dummy_rows(ctx: CheckContext) -> None:
    """Weights rows sum to one."""
    q, k, v = ctx.randn(1, 1, 2, 3), ctx.randn(1, 1, 4, 3), ctx.randn(1, 1, 4, 3)
    _, weights = ctx.call(ctx.adapter.attention, q, k, v, mask=None, is_causal=False)
    ctx.compare_direct("row sums", weights.sum(-1), torch.ones(1, 1, 2, dtype=torch.float64))


@REGISTRY.check("dummy.layernorm", claims=("layernorm.formula",), needs=(Capability.LAYER_NORM,))
def dummy_layernorm(ctx: CheckContext) -> None:
    """Needs a capability no fake declares."""
    ln = ctx.call(ctx.adapter.build_layer_norm, 4, None, ctx.device, ctx.dtype)
    ctx.expect_shape("y", ctx.call(ln, ctx.randn(2, 4)), (2, 4))


BUGGY_REGISTRY = Registry()


@BUGGY_REGISTRY.check("dummy.harness-bug", claims=("attention.formula",), needs=(ATTN,))
def dummy_harness_bug(ctx: CheckContext) -> None:
    """A bug in the check itself (not the target)."""
    _ = 1 / 0


@BUGGY_REGISTRY.check("dummy.property", claims=("attention.weights.range",), needs=(ATTN,))
def dummy_property(ctx: CheckContext) -> None:
    """Fails with a PROPERTY failure carrying measured/allowed."""
    ctx.fail(FailureKind.PROPERTY, "weights out of range", measured=1.5, allowed=1.0)


CRASH_REGISTRY = Registry()
for _i in range(4):
    CRASH_REGISTRY.check(f"dummy.crash-{_i}", claims=("attention.formula",), needs=(ATTN,))(dummy_attention)


class PosingAsTorchMha(GoodAdapter):
    """A third-party adapter that reports a built-in target's name."""

    name = "torch-mha"


def make_posing_as_torch_mha() -> Adapter:
    return PosingAsTorchMha()
