"""Composite checks are blocked, not failed, when a component the target also declares is broken.

A target whose attention function reads the mask with inverted polarity, but which otherwise is the
reference (multi-head attention, layers and LM all built on that broken function in a real
implementation), must fail the attention checks and report the MHA, layer and LM checks as blocked,
not as a cascade of failures. A target that does not declare the attention function at all is
audited at the higher levels as usual (a not-applicable dependency does not block).
"""

import pytest
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.api import run_audit
from transformer_conformance.targets.reference import ReferenceAdapter


class BrokenAttentionEverywhere(ReferenceAdapter):
    """Every capability of the reference, with a planted bug in the attention function."""

    name = "broken-attention-everywhere"

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        return super().attention(q, k, v, mask=None if mask is None else ~mask, is_causal=is_causal)


class NoAttentionCapability(ReferenceAdapter):
    """The reference without the stand-alone attention capability."""

    name = "reference-without-attention"
    capabilities = ReferenceAdapter.capabilities - {Capability.ATTENTION}


CHECKS = [
    "attention.differential",
    "mha.shapes",
    "mha.differential",
    "layernorm.differential",
    "ffn.differential",
    "encoder_layer.shape",
    "lm.shape",
    "lm.cache-equals-recompute",
]


def statuses(target: ReferenceAdapter) -> dict[str, str]:
    report = run_audit([target], profile="quick", check=CHECKS)
    return {r.check: r.status for r in report.results}


@pytest.mark.claim("attention.formula", "mha.shape-preserving", "encoder.output-per-position")
def test_broken_attention_blocks_everything_built_on_it() -> None:
    got = statuses(BrokenAttentionEverywhere())
    assert got["attention.differential"] == "fail"
    assert got["layernorm.differential"] == "pass" and got["ffn.differential"] == "pass"
    # attention -> mha.shapes -> mha.differential -> layer and LM shapes -> everything on the LM
    for blocked in (
        "mha.shapes",
        "mha.differential",
        "encoder_layer.shape",
        "lm.shape",
        "lm.cache-equals-recompute",
    ):
        assert got[blocked] == "blocked", (blocked, got)


@pytest.mark.claim("mha.shape-preserving", "encoder.output-per-position", "output.projection")
def test_undeclared_component_does_not_block() -> None:
    got = statuses(NoAttentionCapability())
    assert got["attention.differential"] == "not-applicable"
    assert got["mha.shapes"] == "pass"
    assert got["encoder_layer.shape"] == "pass"
    assert got["lm.shape"] == "pass"
    assert got["lm.cache-equals-recompute"] == "pass"
