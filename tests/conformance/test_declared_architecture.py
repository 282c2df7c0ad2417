"""Adapters declare their architecture and conventions per capability; the checks read the declaration.

A correct declared-variant target (grouped attention, a Llama-like VariantLM) passes the declaration's
checks; a declaration that rules a feature out makes its check not-applicable with the reason; a
per-capability convention override is what the check uses; a broken component blocks only the
capabilities built from it. The planted bugs (declared one way, computed another) are in
conformance/mutants/ and tests/conformance/test_teeth.py.
"""

from collections.abc import Callable, Mapping
from typing import ClassVar

import pytest
from torch import Tensor

from transformer_conformance.adapter import Capability, Conventions
from transformer_conformance.api import run_audit
from transformer_conformance.mutants._variants import DeclaredVariantAdapter
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.targets.reference import ReferenceAdapter

VARIANT_CHECKS = [
    "attention.shapes",
    "attention.gqa.differential",
    "attention.gqa.repeat-equivalence",
    "attention.scoring.declared",
    "attention.window.differential",
    "lm.shape",
    "lm.reference",
    "lm.cache-equals-recompute",
    "lm.positions.relative-shift",
]


def statuses(target: object, checks: list[str]) -> dict[str, tuple[str, str]]:
    # in-process: the adapters here are local classes (isolation is tested in test_isolation.py)
    report = run_audit([target], profile="quick", check=checks, in_process=True)  # type: ignore[list-item]
    return {r.check: (r.status, r.message) for r in report.results}


class WindowedSoftcapVariant(DeclaredVariantAdapter):
    """Declares (and computes) a window of 3 and a soft-cap of 4 for its attention."""

    name = "declared-window-softcap"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(num_kv_heads=1, sliding_window=3, attn_softcap=4.0)
    }


@pytest.mark.claim(
    "gqa.repeat-equivalence",
    "gqa.mqa-one-group",
    "scoring.softcap",
    "window.blind-outside",
    "rotary.relative-dot-product",
)
def test_correct_declared_variants_pass() -> None:
    got = statuses(WindowedSoftcapVariant(), VARIANT_CHECKS)
    for check_id in VARIANT_CHECKS:
        if check_id == "attention.shapes":
            continue  # the notes' oracle does not model a soft-cap: not part of this declaration's audit
        assert got[check_id][0] == "pass", (check_id, got[check_id])


@pytest.mark.claim("arch.notes-default")
def test_features_the_declaration_rules_out_are_not_applicable_with_the_reason() -> None:
    got = statuses(ReferenceAdapter(), VARIANT_CHECKS)
    assert got["attention.gqa.differential"][0] == "not-applicable"
    assert "num_kv_heads" in got["attention.gqa.differential"][1]
    assert got["attention.window.differential"][0] == "not-applicable"
    assert "sliding_window" in got["attention.window.differential"][1]
    assert got["lm.positions.relative-shift"][0] == "not-applicable"
    assert "absolute positions" in got["lm.positions.relative-shift"][1]
    assert got["lm.reference"][0] == "pass"


class MasksTrueForAttentionOnly(ReferenceAdapter):
    """The reference, with its attention function reading True = masked (declared for that capability
    only) while the MHA keeps the default polarity."""

    name = "polarity-per-capability"
    capability_conventions: ClassVar[Mapping[Capability, Conventions]] = {
        Capability.ATTENTION: Conventions(mask_polarity="true_masks")
    }

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        return super().attention(q, k, v, mask=None if mask is None else ~mask, is_causal=is_causal)


class MasksTrueUndeclared(MasksTrueForAttentionOnly):
    name = "polarity-undeclared"
    capability_conventions: ClassVar[Mapping[Capability, Conventions]] = {}


@pytest.mark.claim("attention.formula", "mha.shape-preserving")
def test_conventions_are_read_per_capability() -> None:
    checks = ["attention.differential", "mha.differential"]
    got = statuses(MasksTrueForAttentionOnly(), checks)
    assert got["attention.differential"][0] == "pass" and got["mha.differential"][0] == "pass", got
    wrong = statuses(MasksTrueUndeclared(), checks)
    assert wrong["attention.differential"][0] == "fail", wrong


class BrokenMhaBesideLM(ReferenceAdapter):
    """The reference with a broken MHA; its LM declares it is not built from that MHA."""

    name = "broken-mha-independent-lm"
    components: ClassVar[Mapping[Capability, frozenset[Capability]]] = {
        Capability.DECODER_LM: frozenset({Capability.LAYER_NORM, Capability.FFN})
    }

    def build_mha(self, *args: object, **kwargs: object) -> Callable[..., tuple[Tensor, Tensor | None]]:
        inner = super().build_mha(*args, **kwargs)  # type: ignore[arg-type]

        def run(*a: Tensor) -> tuple[Tensor, Tensor | None]:
            out, weights = inner(*a)
            return out * 1.5, weights

        return run


class BrokenMhaInsideLM(BrokenMhaBesideLM):
    name = "broken-mha-inside-lm"
    components: ClassVar[Mapping[Capability, frozenset[Capability]]] = {}


@pytest.mark.claim("mha.shape-preserving", "output.projection")
def test_a_broken_component_blocks_only_what_is_built_from_it() -> None:
    checks = ["mha.shapes", "mha.differential", "lm.shape", "encoder_layer.shape"]
    got = statuses(BrokenMhaBesideLM(), checks)
    assert got["mha.differential"][0] == "fail"
    assert got["lm.shape"][0] == "pass", got
    assert got["encoder_layer.shape"][0] == "blocked", got  # built from everything (the default)
    inside = statuses(BrokenMhaInsideLM(), checks)
    assert inside["lm.shape"][0] == "blocked", inside


@pytest.mark.claim("arch.notes-default")
def test_declared_head_width_sets_the_audited_sizes() -> None:
    class WideHeads(ReferenceAdapter):
        name = "wide-heads"
        conventions = Conventions(supported_d_heads=(16,))
        seen: ClassVar[list[int]] = []

        def build_lm(self, config, state, device, dtype):  # type: ignore[no-untyped-def]
            self.seen.append(config.d_head)
            return super().build_lm(config, state, device, dtype)

    target = WideHeads()
    got = statuses(target, ["lm.shape"])
    assert got["lm.shape"][0] == "pass"
    assert set(target.seen) == {16}


@pytest.mark.claim("mask.padding.invariance", "mask.padding.nonfinite-isolated")
def test_nonfinite_pad_contents_are_a_declared_guarantee_of_their_own() -> None:
    from dataclasses import replace

    from transformer_conformance.targets.torch_sdpa import make_math

    checks = ["attention.shapes", "mask.padding.invariance", "mask.padding.nan-contents"]
    default = make_math()
    got = statuses(default, checks)
    assert got["mask.padding.invariance"][0] == "pass", got  # finite pad contents: SDPA is exact
    # declared isolated (the default): 0 * NaN leaks, the recorded deviation of torch-sdpa-math
    assert got["mask.padding.nan-contents"][0] == "known-deviation", got
    leaky = make_math()
    leaky.conventions = replace(leaky.conventions, nonfinite_pads="leak")
    got = statuses(leaky, checks)
    assert got["mask.padding.nan-contents"][0] == "not-applicable", got
    assert "nonfinite_pads" in got["mask.padding.nan-contents"][1]


@pytest.mark.claim("attention.weights.rows-sum-to-one")
def test_the_x_transformers_fully_masked_policy_is_declarable() -> None:
    from transformer_conformance.mutants.attention_zero_output_declared_gives_mean import (
        AttentionZeroOutputDeclaredGivesMeanMutant,
        ZeroOutputUniformWeights,
    )

    checks = ["attention.shapes", "attention.fully-masked-row", "attention.fully-masked-row.declared"]
    got = statuses(ZeroOutputUniformWeights(), checks)
    assert got["attention.fully-masked-row.declared"][0] == "pass", got
    assert got["attention.fully-masked-row"][0] == "not-applicable", got
    bad = statuses(AttentionZeroOutputDeclaredGivesMeanMutant(), checks)
    assert bad["attention.fully-masked-row.declared"][0] == "fail", bad
