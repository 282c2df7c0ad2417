"""Every conformance check has teeth: some planted-bug mutant makes it fail.

Each module of ``transformer_conformance.mutants`` is one adapter with one real-world bug and a
``REJECTED_BY`` tuple naming the checks that must fail on it. This test audits every mutant on the checks
it names (ci profile, so the run is derandomized and reproducible) and asserts (1) each mutant fails every
check it names, and (2) every registered check is named by at least one mutant, except the few
listed in ``WITHOUT_MUTANT`` with a reason; an entry there that has gained a mutant is stale and
fails too. (3) every check draws its inputs through the search driver (``conformance/search.py``):
on the mutants that fail it, it ran at least one search, so its failure is shrunk and replayable,
except the checks listed in ``NOT_SEARCHED`` with a reason.
"""

import importlib
import pkgutil
from types import ModuleType

import pytest

import transformer_conformance.checks  # registers the checks
import transformer_conformance.mutants
from transformer_conformance.api import run_audit
from transformer_conformance.registry import all_checks

# the mutants' audit is a module fixture (about 80 s): every test here on one xdist worker computes it once
pytestmark = pytest.mark.xdist_group("teeth-audit")

# check id -> why no planted bug exists for it yet (keep this empty where possible)
WITHOUT_MUTANT: dict[str, str] = {}

# check id -> why it runs no search of the driver (keep this empty where possible)
NOT_SEARCHED: dict[str, str] = {}


def mutant_modules() -> dict[str, ModuleType]:
    modules = {}
    for info in pkgutil.iter_modules(transformer_conformance.mutants.__path__):
        if not info.name.startswith("_"):
            modules[f"mutant.{info.name.replace('_', '-')}"] = importlib.import_module(
                f"transformer_conformance.mutants.{info.name}"
            )
    return modules


@pytest.fixture(scope="module")
def audit():
    """Each mutant audited on the checks it names only (ci profile): enough to show those checks fail on
    it, and far cheaper than every mutant on every check."""
    results = {}
    for name, module in sorted(mutant_modules().items()):
        # in-process: this test is about the checks' teeth, not isolation (tests/conformance/
        # test_isolation.py), and 84 audits of fresh workers would cost about 3x the time
        report = run_audit([name], profile="ci", check=list(module.REJECTED_BY), in_process=True)
        results.update({(r.target, r.check): r for r in report.results})
    return results


def test_every_mutant_names_registered_checks() -> None:
    known = {c.id for c in all_checks()}
    for name, module in mutant_modules().items():
        rejected_by = getattr(module, "REJECTED_BY", ())
        assert rejected_by, f"{name}: no REJECTED_BY"
        unknown = sorted(set(rejected_by) - known)
        assert not unknown, f"{name}: REJECTED_BY names unknown checks {unknown}"


def test_every_mutant_fails_the_checks_it_names(audit) -> None:
    survived = []
    for name, module in mutant_modules().items():
        for check_id in module.REJECTED_BY:
            result = audit[(name, check_id)]
            if result.status != "fail":
                survived.append(f"{name} :: {check_id} -> {result.status} {result.message or ''}".strip())
    assert not survived, "mutants that survived the checks meant to reject them:\n" + "\n".join(survived)


def test_every_check_is_failed_by_some_mutant() -> None:
    covered = {c for module in mutant_modules().values() for c in module.REJECTED_BY}
    ids = [c.id for c in all_checks()]
    toothless = [c for c in ids if c not in covered and c not in WITHOUT_MUTANT]
    assert not toothless, "checks that no planted bug is known to fail:\n" + "\n".join(toothless)
    stale = sorted(set(WITHOUT_MUTANT) & covered)
    assert not stale, f"WITHOUT_MUTANT entries that now have a mutant (remove them): {stale}"
    unknown = sorted(set(WITHOUT_MUTANT) - set(ids))
    assert not unknown, f"WITHOUT_MUTANT names unknown checks: {unknown}"


def test_every_check_draws_through_the_search_driver(audit) -> None:
    searched: dict[str, int] = {}
    for (_, check_id), result in audit.items():
        if result.status == "fail":
            searched[check_id] = max(searched.get(check_id, 0), result.searches)
    unsearched = sorted(c for c, n in searched.items() if n == 0 and c not in NOT_SEARCHED)
    assert not unsearched, "checks that failed a mutant without running a search:\n" + "\n".join(unsearched)
    stale = sorted(c for c in NOT_SEARCHED if searched.get(c, 0) > 0)
    assert not stale, f"NOT_SEARCHED entries that now search (remove them): {stale}"
    unknown = sorted(set(NOT_SEARCHED) - {c.id for c in all_checks()})
    assert not unknown, f"NOT_SEARCHED names unknown checks: {unknown}"
