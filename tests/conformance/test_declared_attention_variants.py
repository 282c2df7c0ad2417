"""Attention variants declared for the attention and MHA capabilities are what the checks audit.

Grouped-query MHA (``num_kv_heads`` in the MHA's architecture): a correct grouped layer and the built-in
``torch-gqa`` pass; a layer declaring the wrong KV head count or mapping fails; without a declaration
the grouped checks are not-applicable with the reason. The planted bugs (declared one way, computed
another) are in conformance/mutants/ and tests/conformance/test_teeth.py.
"""

from collections.abc import Mapping
from typing import ClassVar

import pytest

from transformer_conformance.adapter import Capability, Conventions
from transformer_conformance.api import run_audit
from transformer_conformance.mutants._grouped import GroupedMhaAdapter
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.reference.grouped import KVMapping
from transformer_conformance.targets.reference import ReferenceAdapter

MHA_CHECKS = [
    "mha.shapes",
    "mha.differential",
    "mha.permutation-equivariance",
    "mha.padding-invariance",
    "mha.causal",
    "mha.fully-masked-row",
    "mha.gqa.differential",
    "mha.gqa.group-relabel",
]
GQA_CHECKS = ["mha.gqa.differential", "mha.gqa.group-relabel"]


def statuses(target: object, checks: list[str]) -> dict[str, tuple[str, str]]:
    # in-process: the adapters here are local classes (isolation is tested in test_isolation.py)
    report = run_audit([target], profile="quick", check=checks, in_process=True)  # type: ignore[list-item]
    return {r.check: (r.status, r.message) for r in report.results}


@pytest.mark.claim("mha.gqa-projections", "mha.gqa-group-relabel", "gqa.repeat-equivalence")
@pytest.mark.parametrize("target", [GroupedMhaAdapter(), "torch-gqa"], ids=["grouped-reference", "torch-gqa"])
def test_correct_grouped_mha_passes(target: object) -> None:
    got = statuses(target, MHA_CHECKS)
    for check_id in MHA_CHECKS:
        assert got[check_id][0] == "pass", (check_id, got[check_id])


class DeclaresOneKvHead(GroupedMhaAdapter):
    """Builds two KV heads, declares one (MQA)."""

    name = "declares-mqa-builds-gqa"
    architecture = Architecture(num_kv_heads=1)


class DeclaresTiled(GroupedMhaAdapter):
    """Computes the contiguous mapping, declares tiled."""

    name = "declares-tiled-computes-contiguous"
    architecture = Architecture(num_kv_heads=2, kv_mapping="tiled")

    def mapping(self) -> KVMapping:
        return "contiguous"


@pytest.mark.claim("mha.gqa-projections", "mha.gqa-group-relabel")
def test_wrong_kv_declaration_fails() -> None:
    wrong_count = statuses(DeclaresOneKvHead(), GQA_CHECKS)
    assert wrong_count["mha.gqa.differential"][0] == "fail", wrong_count
    wrong_mapping = statuses(DeclaresTiled(), GQA_CHECKS)
    assert {s for s, _ in wrong_mapping.values()} == {"fail"}, wrong_mapping


class DeclaredForAttentionOnly(ReferenceAdapter):
    """The reference, declaring grouped KV heads for its attention function only."""

    name = "gqa-attention-only"
    capability_architectures: ClassVar[Mapping[Capability, Architecture]] = {
        Capability.ATTENTION: Architecture(num_kv_heads=1)
    }


class GroupedNoWeights(GroupedMhaAdapter):
    name = "grouped-no-weights"
    conventions = Conventions(loads_weights=False)


@pytest.mark.claim("arch.notes-default")
def test_grouped_mha_checks_not_applicable_with_the_reason() -> None:
    for target in (ReferenceAdapter(), DeclaredForAttentionOnly()):
        got = statuses(target, GQA_CHECKS)
        for check_id in GQA_CHECKS:
            status, message = got[check_id]
            assert status == "not-applicable" and "num_kv_heads for its MHA" in message, (check_id, got)
    got = statuses(GroupedNoWeights(), GQA_CHECKS)
    assert all(s == "not-applicable" and "loads_weights=False" in m for s, m in got.values()), got


@pytest.mark.claim("mha.gqa-group-relabel")
@pytest.mark.parametrize("seed", [0, 4, 7])
def test_wrong_kv_mapping_fails_the_relabel_check_on_every_seed(seed: int) -> None:
    # Seed 4 drew, before the within-group-only relabel, a combined relabel that is also valid
    # under the contiguous grouping, so the wrong declaration survived it.
    report = run_audit(
        [DeclaresTiled()],  # type: ignore[list-item]
        profile="quick",
        check=["mha.gqa.group-relabel"],
        in_process=True,
        seed=seed,
    )
    assert [r.status for r in report.results] == ["fail"], report.results
