"""Blame: a check credits only the claims it tests, so a bug shows FAIL under the claims it breaks.

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
