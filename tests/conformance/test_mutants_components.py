"""Planted-bug mutants of the component checks: each is rejected by the claim it breaks, while
correct targets with other declared conventions pass (the checks follow declarations, not habits)."""

from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.api import run_audit
from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.layernorm import layer_norm
from transformer_conformance.reference.masks import causal_mask, combine_masks
from transformer_conformance.reference.positional import sinusoidal_encoding
from transformer_conformance.registry import all_checks
from transformer_conformance.targets.reference import ReferenceAdapter
from transformer_conformance.targets.torch_sdpa import make_math

MODULES = ("attention", "masks", "mha", "layernorm", "ffn", "positional")
COMPONENT_CHECKS = [c.id for c in all_checks() if c.fn.__module__.rsplit(".", 1)[-1] in MODULES]

# (mutant, the claim that must reject it, the check realising that claim)
MUTANTS = [
    ("mutant.mask-polarity-inverted", "mask.neg-inf-exact-zero", "mask.masked-weights-zero"),
    ("mutant.is-causal-ignored", "mask.causal.future-blind", "mask.causal.is-causal"),
    ("mutant.diagonal-masked", "mask.causal.diagonal-visible", "mask.causal.diagonal-visible"),
    ("mutant.softmax-wrong-axis", "attention.weights.rows-sum-to-one", "attention.weights.rows-sum-to-one"),
    ("mutant.finite-mask", "mask.finite-negative", "mask.padding.invariance"),
    ("mutant.nan-fully-masked", "attention.fully-masked-row", "attention.fully-masked-row"),
    ("mutant.mha-scale-d-model", "attention.scale.sqrt-dk", "mha.differential"),
    ("mutant.heads-mixed", "mha.split-merge-roundtrip", "mha.differential"),
    ("mutant.layernorm-unbiased", "layernorm.formula", "layernorm.differential"),
    ("mutant.layernorm-eps-outside", "layernorm.formula", "layernorm.differential"),
    ("mutant.sinusoidal-swapped", "positional.sinusoidal.formula", "positional.sinusoidal.formula"),
]


def audit(target: Any, device: torch.device, **kwargs: Any) -> Any:
    return run_audit([target], check=COMPONENT_CHECKS, device=device, profile="ci", progress=False, **kwargs)


@pytest.mark.claim(
    "attention.fully-masked-row",
    "attention.scale.sqrt-dk",
    "attention.weights.rows-sum-to-one",
    "layernorm.formula",
    "mask.causal.diagonal-visible",
    "mask.causal.future-blind",
    "mask.finite-negative",
    "mask.neg-inf-exact-zero",
    "mha.split-merge-roundtrip",
    "positional.sinusoidal.formula",
)
@pytest.mark.parametrize(("mutant", "claim", "check_id"), MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_is_rejected_by_its_claim(
    mutant: str, claim: str, check_id: str, device: torch.device
) -> None:
    report = audit(mutant, device)
    by_check = {r.check: r for r in report.results}
    assert by_check[check_id].status == "fail", by_check[check_id]
    assert claim in by_check[check_id].claims
    assert report.exit_code != 0
    assert not [r for r in report.results if r.status == "error"]


# -- correct targets with other declared conventions ------------------------------------------------
class TrueMasksReference(ReferenceAdapter):
    """Masks with True = masked (declared); attention and MHA invert them back."""

    name = "reference-true-masks"
    capabilities = frozenset({Capability.ATTENTION, Capability.MHA})
    conventions = replace(ReferenceAdapter.conventions, mask_polarity="true_masks")

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        return super().attention(q, k, v, mask=None if mask is None else ~mask, is_causal=is_causal)

    def attention_additive(self, q: Tensor, k: Tensor, v: Tensor, *, bias: Tensor) -> tuple[Tensor, Tensor]:
        return super().attention_additive(q, k, v, bias=bias)

    def build_mha(self, d_model: int, num_heads: int, state: Any, device: Any, dtype: Any) -> Any:
        inner = super().build_mha(d_model, num_heads, state, device, dtype)

        def run(
            x_q: Tensor, x_kv: Tensor, key_padding: Tensor | None = None, attn_mask: Tensor | None = None
        ) -> Any:
            return inner(
                x_q,
                x_kv,
                None if key_padding is None else ~key_padding,
                None if attn_mask is None else ~attn_mask,
            )

        return run


class TopLeftReference(ReferenceAdapter):
    """is_causal aligned top-left (declared)."""

    name = "reference-top-left"
    capabilities = frozenset({Capability.ATTENTION})
    conventions = replace(ReferenceAdapter.conventions, causal_alignment="top-left")

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        if is_causal:
            causal = causal_mask(q.shape[-2], k.shape[-2], alignment="top-left", device=q.device)
            mask = combine_masks(mask, causal)
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        return out, weights


class NanRowsReference(ReferenceAdapter):
    """Fully masked rows give NaN, and the target says so."""

    name = "reference-nan-rows"
    capabilities = frozenset({Capability.ATTENTION})
    conventions = replace(ReferenceAdapter.conventions, fully_masked_row="nan")

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        out, weights = super().attention(q, k, v, mask=mask, is_causal=is_causal)
        assert weights is not None
        if mask is not None:
            dead = ~mask.expand(weights.shape).any(dim=-1, keepdim=True)
            out, weights = out.masked_fill(dead, float("nan")), weights.masked_fill(dead, float("nan"))
        return out, weights


class ConcatenatedReference(ReferenceAdapter):
    """Sinusoidal table in the concatenated layout (declared)."""

    name = "reference-concatenated"
    capabilities = frozenset({Capability.POSITIONAL})
    conventions = replace(ReferenceAdapter.conventions, sinusoidal_layout="concatenated")

    def positional_table(self, num_positions: int, d_model: int, device: Any, dtype: Any) -> Tensor:
        table: Tensor = sinusoidal_encoding(
            num_positions, d_model, layout="concatenated", dtype=dtype, device=device
        )
        return table


class WideEpsLayerNorm(ReferenceAdapter):
    """LayerNorm with eps 1e-3 (declared)."""

    name = "reference-eps-1e-3"
    capabilities = frozenset({Capability.LAYER_NORM})
    conventions = replace(ReferenceAdapter.conventions, layer_norm_eps=1e-3)

    def build_layer_norm(self, d: int, state: Any, device: Any, dtype: Any) -> Any:
        assert state is not None
        return lambda x: layer_norm(x, state["weight"], state["bias"], 1e-3)


ALTERNATIVES = [
    TrueMasksReference,
    TopLeftReference,
    NanRowsReference,
    ConcatenatedReference,
    WideEpsLayerNorm,
]


@pytest.mark.claim(
    "mask.causal.alignment",
    "attention.fully-masked-row",
    "positional.sinusoidal.formula",
    "layernorm.formula",
    "mask.padding.invariance",
)
@pytest.mark.parametrize("adapter_class", ALTERNATIVES, ids=[a.name for a in ALTERNATIVES])
def test_correct_target_with_other_declared_convention_passes(
    adapter_class: type, device: torch.device
) -> None:
    report = audit(adapter_class(), device)
    bad = [
        (r.check, r.status, r.message) for r in report.results if r.status not in ("pass", "not-applicable")
    ]
    assert not bad
    assert sum(r.status == "pass" for r in report.results) >= 3


@pytest.mark.claim("mask.causal.alignment")
def test_wrong_alignment_declaration_is_rejected(device: torch.device) -> None:
    """torch SDPA is top-left aligned; declaring bottom-right makes the causal checks fail."""
    sdpa = make_math()
    sdpa.name = "torch-sdpa-math-declared-bottom-right"
    sdpa.conventions = replace(sdpa.conventions, causal_alignment="bottom-right")
    report = audit(sdpa, device, in_process=True)  # an SDPA adapter instance does not pickle
    by_check = {r.check: r.status for r in report.results}
    assert by_check["mask.causal.is-causal"] == "fail"
    assert by_check["mask.causal.differential"] == "fail"
    assert by_check["mask.causal.explicit"] == "pass"  # the explicit-mask path does not depend on it


@pytest.mark.claim("attention.fully-masked-row")
def test_nan_rows_under_zero_declaration_is_rejected_but_nan_declared_passes(device: torch.device) -> None:
    """The same behaviour passes or fails depending only on the declaration."""
    wrong = NanRowsReference()
    wrong.name = "nan-rows-declared-zero"
    wrong.conventions = ReferenceAdapter.conventions
    report = run_audit(
        [wrong],
        check=["attention.shapes", "attention.fully-masked-row"],
        device=device,
        profile="ci",
        progress=False,
    )
    assert {r.check: r.status for r in report.results}["attention.fully-masked-row"] == "fail"
    # declared honestly, the same behaviour is not credited with the zero policy, only verified
    honest = run_audit(
        [NanRowsReference()],
        check=["attention.shapes", "attention.fully-masked-row", "attention.fully-masked-row.declared"],
        device=device,
        profile="ci",
        progress=False,
    )
    got = {r.check: r.status for r in honest.results}
    assert got["attention.fully-masked-row"] == "not-applicable"
    assert got["attention.fully-masked-row.declared"] == "pass"


class UniformRowsDeclaredNan(NanRowsReference):
    """Declares 'nan' but returns the reference's zero rows: the declared check must notice."""

    name = "zero-rows-declared-nan"

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        return ReferenceAdapter.attention(self, q, k, v, mask=mask, is_causal=is_causal)


class AdditiveBiasIgnored(ReferenceAdapter):
    """Planted bug: the additive-mask entry point drops the bias (sees the future)."""

    name = "additive-bias-ignored"
    capabilities = frozenset({Capability.ATTENTION})

    def attention_additive(self, q: Tensor, k: Tensor, v: Tensor, *, bias: Tensor) -> tuple[Tensor, Tensor]:
        return super().attention_additive(q, k, v, bias=torch.zeros_like(bias))


@pytest.mark.claim("attention.weights.rows-sum-to-one", "mask.causal.additive-form")
def test_declared_row_convention_and_additive_causal_bias_have_teeth(device: torch.device) -> None:
    wrong = run_audit(
        [UniformRowsDeclaredNan()],
        check=["attention.shapes", "attention.fully-masked-row.declared"],
        device=device,
        profile="ci",
        progress=False,
    )
    assert {r.check: r.status for r in wrong.results}["attention.fully-masked-row.declared"] == "fail"
    ignored = run_audit(
        [AdditiveBiasIgnored()],
        check=["attention.shapes", "mask.causal.additive", "mask.causal.differential"],
        device=device,
        profile="ci",
        progress=False,
    )
    got = {r.check: r.status for r in ignored.results}
    assert got["mask.causal.additive"] == "fail"
    assert got["mask.causal.differential"] == "pass"  # the boolean path is fine: only the bias is lost
