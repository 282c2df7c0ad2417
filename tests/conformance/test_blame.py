"""Blame: a check credits only the claims it tests, so a bug shows FAIL under the claims it breaks.

A formula bug (a wrong score scale, a wrong head split) fails the formula check; the fully-masked-row
and shape checks look only at their own claims and pass, and the checks that can judge their claim only
against the oracle's values depend on the formula check and are shown ``blocked``.
The positional claim checks judge the target's own table (no formula assumed): a table with another
frequency base or exponent fails only the formula check, while a sin-only table, which really breaks
the shift and dot-product claims, fails those.
"""

import pytest
import torch

from transformer_conformance.api import run_audit
from transformer_conformance.registry import all_checks

POSITIONAL_CHECKS = [c.id for c in all_checks() if c.id.startswith("positional.")]
FORMULA = "positional.sinusoidal.formula"


def matrix_column(target: str, device: torch.device) -> tuple[dict[str, str], dict[str, str]]:
    """(check -> status, claim -> matrix cell status) of a full audit of ``target`` (ci profile)."""
    report = run_audit([target], device=device, profile="ci", progress=False)
    _, _, cells = report.matrix()
    return {r.check: r.status for r in report.results}, {c: s for (c, _), s in cells.items()}


@pytest.mark.claim("attention.fully-masked-row", "attention.shapes", "attention.scale.sqrt-dk")
def test_scale_bug_fails_only_the_formula(device: torch.device) -> None:
    checks, claims = matrix_column("mutant.attention-scale-by-dk", device)
    assert {c for c, s in checks.items() if s == "fail"} == {"attention.differential"}
    assert {c for c, s in claims.items() if s == "fail"} == {
        "attention.formula",
        "attention.score-is-dot-product",
        "attention.scale.sqrt-dk",
    }
    assert claims["attention.fully-masked-row"] == "pass"
    assert claims["attention.shapes"] == "pass"
    for dependent in ("attention.half-precision", "mask.causal.differential", "mask.causal.additive"):
        assert checks[dependent] == "blocked", dependent


@pytest.mark.claim("attention.fully-masked-row", "mha.split-merge-roundtrip")
def test_head_split_bug_fails_only_the_mha_formula(device: torch.device) -> None:
    checks, claims = matrix_column("mutant.heads-mixed", device)
    assert {c for c, s in checks.items() if s == "fail"} == {"mha.differential"}
    assert claims["mha.split-merge-roundtrip"] == "fail"
    assert claims["attention.fully-masked-row"] == "pass"
    assert checks["mha.fully-masked-row"] == "pass"
    assert claims["mha.shape-preserving"] == "pass"


def statuses(target: str, checks: list[str], device: torch.device) -> dict[str, str]:
    report = run_audit([target], check=checks, device=device, profile="ci", progress=False)
    return {r.check: r.status for r in report.results}


@pytest.mark.claim(
    "positional.sinusoidal.formula",
    "positional.sinusoidal.relative-linear",
    "positional.sinusoidal.offset-dot-product",
)
@pytest.mark.parametrize("mutant", ["mutant.positional-base-5000", "mutant.positional-frequency-exponent"])
def test_wrong_frequencies_fail_only_the_formula(mutant: str, device: torch.device) -> None:
    got = statuses(mutant, POSITIONAL_CHECKS, device)
    assert got[FORMULA] == "fail"
    others = {c: s for c, s in got.items() if c != FORMULA}
    assert others and all(s == "pass" for s in others.values()), others


@pytest.mark.claim("positional.sinusoidal.relative-linear", "positional.sinusoidal.offset-dot-product")
def test_sin_only_table_breaks_the_shift_claims(device: torch.device) -> None:
    got = statuses("mutant.positional-sin-only", POSITIONAL_CHECKS, device)
    assert got["positional.sinusoidal.relative-linear"] == "fail"
    assert got["positional.sinusoidal.offset-dot-product"] == "fail"
    assert got["positional.sinusoidal.bounded"] == "pass"
    assert got["positional.sinusoidal.any-length"] == "pass"
