"""Every conformance check has teeth: some planted-bug mutant makes it fail.

Each module of ``conformance.mutants`` is one adapter with one real-world bug and a ``REJECTED_BY``
tuple naming the checks that must fail on it. This test audits every mutant (ci profile, so the run is
derandomized and reproducible) and asserts (1) each mutant fails every check it names, and (2) every
registered check is named by at least one mutant, except the few listed in ``WITHOUT_MUTANT`` with a
reason; an entry there that has gained a mutant is stale and fails too.
"""

import importlib
import pkgutil
from types import ModuleType

import pytest

import conformance.checks  # registers the checks
import conformance.mutants
from conformance.api import run_audit
from conformance.registry import all_checks

# check id -> why no planted bug exists for it yet (keep this empty where possible)
WITHOUT_MUTANT: dict[str, str] = {
    "attention.shapes": "no mutant yet",
    "attention.weights.shape": "no mutant yet",
    "attention.shapes.value-width": "no mutant yet",
    "attention.weights.range": "no mutant yet",
    "attention.convex-combination": "no mutant yet",
    "attention.fully-masked-row.declared": "no mutant yet",
    "attention.differential": "no mutant yet",
    "attention.half-precision": "no mutant yet",
    "attention.determinism": "no mutant yet",
    "attention.batch-independence": "no mutant yet",
    "mask.padding.nan-contents": "no mutant yet",
    "mask.causal.explicit": "no mutant yet",
    "mask.causal.differential": "no mutant yet",
    "mask.causal.additive": "no mutant yet",
    "mask.boolean-equals-additive": "no mutant yet",
    "mha.shapes": "no mutant yet",
    "mha.permutation-equivariance": "no mutant yet",
    "mha.cross.memory-permutation": "no mutant yet",
    "mha.padding-invariance": "no mutant yet",
    "mha.padding.nan-contents": "no mutant yet",
    "mha.causal": "no mutant yet",
    "mha.fully-masked-row": "no mutant yet",
    "mha.fully-masked-row.declared": "no mutant yet",
    "mha.batch-independence": "no mutant yet",
    "mha.determinism": "no mutant yet",
    "layernorm.shapes": "no mutant yet",
    "layernorm.zero-mean-unit-var": "no mutant yet",
    "layernorm.per-sample": "no mutant yet",
    "ffn.shapes": "no mutant yet",
    "ffn.differential": "no mutant yet",
    "ffn.position-wise": "no mutant yet",
    "positional.shapes": "no mutant yet",
    "positional.sinusoidal.bounded": "no mutant yet",
    "positional.sinusoidal.relative": "no mutant yet",
    "positional.sinusoidal.any-length": "no mutant yet",
    "encoder_layer.shape": "no mutant yet",
    "encoder_layer.padding-invariance": "no mutant yet",
    "encoder_layer.padding-nan": "no mutant yet",
    "encoder_layer.batch-independence": "no mutant yet",
    "encoder_layer.fully-padded-neighbour": "no mutant yet",
    "encoder_layer.fully-padded-sample": "no mutant yet",
    "encoder_layer.residual-placement": "no mutant yet",
    "encoder_layer.reference": "no mutant yet",
    "decoder_layer.shape": "no mutant yet",
    "decoder_layer.padding-invariance": "no mutant yet",
    "decoder_layer.padding-nan": "no mutant yet",
    "decoder_layer.batch-independence": "no mutant yet",
    "decoder_layer.causality": "no mutant yet",
    "decoder_layer.memory-permutation": "no mutant yet",
    "decoder_layer.residual-placement": "no mutant yet",
    "decoder_layer.reference": "no mutant yet",
    "lm.shape": "no mutant yet",
    "lm.padding-invariance": "no mutant yet",
    "lm.causality": "no mutant yet",
    "lm.teacher-forcing": "no mutant yet",
    "lm.reference": "no mutant yet",
    "encdec.shape": "no mutant yet",
    "encdec.padding-invariance": "no mutant yet",
    "encdec.batch-independence": "no mutant yet",
    "encdec.causality": "no mutant yet",
    "encdec.determinism": "no mutant yet",
    "encdec.cache-equals-recompute": "no mutant yet",
    "encdec.teacher-forcing": "no mutant yet",
    "encdec.chunked-prefill": "no mutant yet",
    "encdec.reference": "no mutant yet",
    "encdec.memory-permutation": "no mutant yet",
    "sampler.shape": "no mutant yet",
    "sampler.frequencies": "no mutant yet",
    "sampler.temperature-limits": "no mutant yet",
    "sampler.invalid-temperature": "no mutant yet",
}


def mutant_modules() -> dict[str, ModuleType]:
    modules = {}
    for info in pkgutil.iter_modules(conformance.mutants.__path__):
        if not info.name.startswith("_"):
            modules[f"mutant.{info.name.replace('_', '-')}"] = importlib.import_module(
                f"conformance.mutants.{info.name}"
            )
    return modules


@pytest.fixture(scope="module")
def audit():
    report = run_audit(sorted(mutant_modules()), profile="ci")
    return {(r.target, r.check): r for r in report.results}


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
