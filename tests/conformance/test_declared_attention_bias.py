"""Position biases and soft-capping declared for the attention capability are what the checks audit.

ALiBi (``positions="alibi"``), T5 relative buckets (``positions="relative"`` with the target's own table
behind ``relative_bias_table``) and ``attn_softcap``: correct targets (the declared-variant reference
adapter in each combination, the built-in ``torch-sdpa-alibi``) pass every bias check their declaration
admits; targets declaring the wrong convention, slopes, direction or cap fail; without a declaration the
checks are not-applicable with the reason. The planted bugs are in conformance/mutants/ (test_teeth.py).
"""

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import ClassVar

import pytest
import torch
from torch import Tensor

from transformer_conformance.adapter import Capability
from transformer_conformance.api import run_audit
from transformer_conformance.mutants._variants import DeclaredVariantAdapter
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.targets.reference import ReferenceAdapter
from transformer_conformance.targets.torch_sdpa_alibi import TorchSDPAAlibiAdapter

BIAS_CHECKS = [
    "attention.alibi.differential",
    "attention.alibi.measured-slopes",
    "attention.relbias.differential",
    "attention.relbias.additive",
    "attention.softcap.bounded",
]
NOTES_FORMULA_CHECKS = [
    "attention.differential",
    "mask.causal.differential",
    "attention.scoring.declared",
]


def statuses(target: object, checks: list[str]) -> dict[str, tuple[str, str]]:
    # in-process: the adapters here are local classes (isolation is tested in test_isolation.py)
    report = run_audit([target], profile="quick", check=checks, in_process=True)  # type: ignore[list-item]
    return {r.check: (r.status, r.message) for r in report.results}


def declaring(name: str, arch: Architecture) -> DeclaredVariantAdapter:
    """The declared-variant reference adapter (correct by construction) declaring ``arch``."""
    cls = type(
        name.replace("-", "_"),
        (DeclaredVariantAdapter,),
        {"name": name, "capability_architectures": {Capability.ATTENTION: arch}},
    )
    return cls()  # type: ignore[no-any-return]


SMALL_T5 = {"relative_buckets": 8, "relative_max_distance": 16}
CORRECT = {
    "alibi": (
        Architecture(positions="alibi"),
        {"attention.alibi.differential", "attention.alibi.measured-slopes"},
    ),
    "alibi-gqa": (
        Architecture(positions="alibi", num_kv_heads=2),
        {"attention.alibi.differential", "attention.alibi.measured-slopes"},
    ),
    "alibi-softcap": (
        Architecture(positions="alibi", attn_softcap=5.0),
        {"attention.alibi.differential", "attention.alibi.measured-slopes", "attention.softcap.bounded"},
    ),
    "relative-bidirectional": (
        Architecture(positions="relative", **SMALL_T5),  # type: ignore[arg-type]
        {"attention.relbias.differential", "attention.relbias.additive"},
    ),
    "relative-causal-t5-scale": (
        Architecture(positions="relative", relative_bidirectional=False, attn_scale=1.0),
        {"attention.relbias.differential", "attention.relbias.additive"},
    ),
    "relative-softcap": (
        Architecture(positions="relative", attn_softcap=30.0, **SMALL_T5),  # type: ignore[arg-type]
        {"attention.relbias.differential", "attention.relbias.additive", "attention.softcap.bounded"},
    ),
    "softcap-50": (Architecture(attn_softcap=50.0), {"attention.softcap.bounded"}),
}


@pytest.mark.claim(
    "alibi.slopes",
    "alibi.distance-only",
    "alibi.measured-slopes",
    "relbias.buckets",
    "relbias.distance-only",
    "scoring.additive-bias",
    "scoring.softcap-bounds-weights",
    "scoring.softcap",
)
@pytest.mark.parametrize("variant", sorted(CORRECT))
def test_correct_declared_bias_passes(variant: str) -> None:
    arch, applicable = CORRECT[variant]
    got = statuses(declaring(f"declared-{variant}", arch), BIAS_CHECKS)
    for check_id in BIAS_CHECKS:
        want = "pass" if check_id in applicable else "not-applicable"
        assert got[check_id][0] == want, (check_id, got[check_id])


@pytest.mark.claim("alibi.slopes", "alibi.distance-only", "alibi.measured-slopes")
def test_torch_sdpa_alibi_passes_every_attention_check_its_declaration_admits() -> None:
    report = run_audit(["torch-sdpa-alibi"], profile="quick", in_process=True)
    got = {r.check: (r.status, r.message) for r in report.results}
    assert got["attention.alibi.differential"][0] == "pass", got["attention.alibi.differential"]
    assert got["attention.alibi.measured-slopes"][0] == "pass", got["attention.alibi.measured-slopes"]
    failed = {c: s for c, s in got.items() if s[0] not in ("pass", "not-applicable")}
    assert not failed, failed
    for check_id in NOTES_FORMULA_CHECKS[:2]:
        status, message = got[check_id]
        assert status == "not-applicable" and "attention.alibi.differential" in message, (check_id, message)


def naive_slopes(n: int) -> list[float]:
    """2^(-8k/n) for every n: right for powers of two only (the non-power-of-two recipe forgotten)."""
    return [2 ** (-8 * k / n) for k in range(1, n + 1)]


class NaiveSlopesAlibi(TorchSDPAAlibiAdapter):
    """torch-sdpa-alibi with the power-of-two slope formula used for every head count."""

    name = "sdpa-alibi-naive-slopes"

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        import transformer_conformance.targets.torch_sdpa_alibi as module

        saved = module.get_slopes
        module.get_slopes = naive_slopes  # type: ignore[assignment]
        try:
            return super().attention(q, k, v, mask=mask, is_causal=is_causal)
        finally:
            module.get_slopes = saved


class DeclaresTopLeft(TorchSDPAAlibiAdapter):
    """torch-sdpa-alibi (bottom-right is_causal) declaring the top-left causal alignment."""

    name = "sdpa-alibi-declares-top-left"
    conventions = replace(TorchSDPAAlibiAdapter.conventions, causal_alignment="top-left")


class DeclaresRelative(TorchSDPAAlibiAdapter):
    """torch-sdpa-alibi declaring a T5 relative bias (with a table) instead of ALiBi."""

    name = "sdpa-alibi-declares-relative"
    architecture = Architecture(positions="relative", **SMALL_T5)  # type: ignore[arg-type]

    def relative_bias_table(self, num_heads: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        return torch.zeros(8, num_heads, device=device, dtype=dtype)


class CausalBucketsDeclaredBidirectional(DeclaredVariantAdapter):
    """Computes causal T5 buckets, declares bidirectional ones."""

    name = "relative-causal-declared-bidirectional"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(positions="relative", **SMALL_T5)  # type: ignore[arg-type]
    }

    def attention_arch(self) -> Architecture:
        return replace(self.architecture_for(Capability.ATTENTION), relative_bidirectional=False)


class CapDeclaredTooLarge(DeclaredVariantAdapter):
    """Computes ALiBi with a soft-cap of 2, declares a cap of 5."""

    name = "alibi-cap-2-declared-5"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(positions="alibi", attn_softcap=5.0)
    }

    def attention_arch(self) -> Architecture:
        return replace(self.architecture_for(Capability.ATTENTION), attn_softcap=2.0)


@pytest.mark.claim("alibi.slopes", "alibi.measured-slopes", "relbias.buckets", "scoring.softcap")
def test_wrong_declaration_fails() -> None:
    assert not math.log2(3).is_integer()
    naive = statuses(NaiveSlopesAlibi(), BIAS_CHECKS[:2])
    assert {s for s, _ in naive.values()} == {"fail"}, naive
    assert "3 heads" in naive["attention.alibi.measured-slopes"][1] or "6 heads" in naive[
        "attention.alibi.measured-slopes"
    ][1], naive
    top_left = statuses(DeclaresTopLeft(), ["attention.alibi.differential"])
    assert top_left["attention.alibi.differential"][0] == "fail", top_left
    assert "is_causal" in top_left["attention.alibi.differential"][1], top_left
    relative = statuses(DeclaresRelative(), BIAS_CHECKS)
    assert relative["attention.relbias.differential"][0] == "fail", relative
    assert relative["attention.relbias.additive"][0] == "pass", relative  # ALiBi is relative and additive
    direction = statuses(CausalBucketsDeclaredBidirectional(), BIAS_CHECKS[2:4])
    assert direction["attention.relbias.differential"][0] == "fail", direction
    assert direction["attention.relbias.additive"][0] == "pass", direction  # still a relative bias
    cap = statuses(CapDeclaredTooLarge(), BIAS_CHECKS)
    assert cap["attention.alibi.differential"][0] == "fail", cap
    assert cap["attention.softcap.bounded"][0] == "pass", cap  # a smaller cap bounds the weights too


class RelativeWithoutTable(DeclaredVariantAdapter):
    """Declares a relative bias but exposes no table."""

    name = "relative-without-table"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(positions="relative", **SMALL_T5)  # type: ignore[arg-type]
    }
    relative_bias_table = None  # type: ignore[assignment]

    def position_bias(self, nq: int, nk: int, h: int, device: torch.device) -> Tensor | None:
        return DeclaredVariantAdapter.relative_bias_table(self, h, device, torch.float64)[
            torch.zeros(nq, nk, dtype=torch.long, device=device)
        ].permute(2, 0, 1)


@pytest.mark.claim("arch.notes-default", "scoring.additive-bias")
def test_bias_checks_not_applicable_with_the_reason() -> None:
    got = statuses(ReferenceAdapter(), BIAS_CHECKS)
    for check_id in BIAS_CHECKS:
        status, message = got[check_id]
        assert status == "not-applicable", (check_id, got[check_id])
        assert ("declares positions='absolute'" in message) or ("no attn_softcap" in message), message
    no_table = statuses(RelativeWithoutTable(), BIAS_CHECKS[2:4])
    status, message = no_table["attention.relbias.differential"]
    assert status == "not-applicable" and "relative_bias_table" in message, no_table
    assert no_table["attention.relbias.additive"][0] == "pass", no_table  # black box, no table needed
    alibi = statuses(declaring("declared-alibi-notes", Architecture(positions="alibi")), NOTES_FORMULA_CHECKS)
    for check_id in NOTES_FORMULA_CHECKS:
        status, message = alibi[check_id]
        assert status == "not-applicable", (check_id, alibi[check_id])


class NarrowAlibi(DeclaredVariantAdapter):
    """ALiBi at head width 2 only: the black-box weight readout takes several 2-wide blocks of V."""

    name = "alibi-d-head-2"
    conventions = replace(DeclaredVariantAdapter.conventions, supported_d_heads=(2,))
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(positions="alibi", attn_softcap=5.0)
    }

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        assert q.shape[-1] == 2 and v.shape[-1] == 2, (q.shape, v.shape)
        return super().attention(q, k, v, mask=mask, is_causal=is_causal)


@pytest.mark.claim("alibi.measured-slopes", "scoring.softcap-bounds-weights")
def test_bias_checks_read_weights_at_a_declared_head_width() -> None:
    got = statuses(NarrowAlibi(), BIAS_CHECKS)
    for check_id in BIAS_CHECKS[:2] + BIAS_CHECKS[4:]:
        assert got[check_id][0] == "pass", (check_id, got[check_id])


@pytest.mark.claim("relbias.buckets", "relbias.distance-only", "scoring.additive-bias")
@pytest.mark.parametrize("name", ["hf-t5-relbias", "hf-t5-relbias-causal"])
def test_transformers_t5_bias_passes(name: str) -> None:
    pytest.importorskip("transformers")
    got = statuses(name, BIAS_CHECKS)
    for check_id in BIAS_CHECKS[2:4]:
        assert got[check_id][0] == "pass", (check_id, got[check_id])


@pytest.mark.claim("relbias.buckets")
def test_transformers_t5_decoder_declared_bidirectional_fails() -> None:
    pytest.importorskip("transformers")
    from transformer_conformance.targets.hf_t5_relbias import make_causal

    target = make_causal()
    target.name = "hf-t5-relbias-causal-declared-bidirectional"
    target.architecture = replace(target.architecture, relative_bidirectional=True)
    got = statuses(target, BIAS_CHECKS[2:4])
    assert got["attention.relbias.differential"][0] == "fail", got
    assert got["attention.relbias.additive"][0] == "pass", got  # still a relative, additive bias


@pytest.mark.claim("scoring.softcap", "scoring.softcap-bounds-weights", "scoring.scale-override")
def test_transformers_gemma2_softcap_attention_passes_every_check_it_admits() -> None:
    pytest.importorskip("transformers")
    report = run_audit(["hf-gemma2-attention"], profile="quick", in_process=True)
    got = {r.check: (r.status, r.message) for r in report.results}
    for check_id in ("attention.softcap.bounded", "attention.scoring.declared", "attention.gqa.differential"):
        assert got[check_id][0] == "pass", (check_id, got[check_id])
    failed = {c: s for c, s in got.items() if s[0] not in ("pass", "not-applicable")}
    assert not failed, failed


class Gemma2CapDeclared30(DeclaredVariantAdapter):
    """A correct soft-capped attention (cap 50), declaring a cap of 30 (as Gemma 2's final-logit cap)."""

    name = "softcap-50-declared-30"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(attn_softcap=30.0)
    }

    def attention_arch(self) -> Architecture:
        return replace(self.architecture_for(Capability.ATTENTION), attn_softcap=50.0)


@pytest.mark.claim("scoring.softcap-bounds-weights")
def test_a_cap_larger_than_declared_fails_the_bound() -> None:
    got = statuses(Gemma2CapDeclared30(), ["attention.softcap.bounded", "attention.scoring.declared"])
    assert {s for s, _ in got.values()} == {"fail"}, got
