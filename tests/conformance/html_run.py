"""One audit with every status, for the HTML report tests (built once per test process).

Targets: the fakes (good: passes; NaN: a known deviation that blocks its dependent; wrong shape: a
failure with nothing to draw; all three fail the built-in mask checks, since they ignore masks),
the reference (passes) and two real mutants whose failures carry evidence (attention weights,
influence maps, per-step cache errors). Checks: the fake registry plus a few built-in checks.
"""

import functools
from pathlib import Path

from transformer_conformance.api import run_audit
from transformer_conformance.registry import Registry, load_builtin_checks
from transformer_conformance.report import AuditReport

from . import fakes

BUILTIN = (
    "attention.shapes",
    "attention.differential",
    "mask.masked-weights-zero",
    "mask.causal.explicit",
    "mask.padding.invariance",
    "lm.shape",
    "lm.cache-equals-recompute",
)
TARGETS = (
    "reference",
    "mutant.mask-polarity-inverted",
    "mutant.kv-cache-offset",
)
DEVIATION = (
    '[[deviation]]\nclaim = "attention.formula"\ncheck = "dummy.attention"\n'
    'category = "bug"\nreason = "NaN everywhere (planted for the report test)"\n'
)


def _with_dependencies(ids: tuple[str, ...]) -> list[str]:
    builtin, out = load_builtin_checks(), []

    def visit(check_id: str) -> None:
        if check_id not in out:
            for dep in builtin.get(check_id).depends_on:
                visit(dep)
            out.append(check_id)

    for check_id in ids:
        visit(check_id)
    return out


REGISTRY = Registry()
for _spec in fakes.REGISTRY.all():
    REGISTRY.add(_spec)
for _id in _with_dependencies(BUILTIN):
    REGISTRY.add(load_builtin_checks().get(_id))


@functools.cache
def mixed_report(deviations_dir: str) -> AuditReport:
    """The audit (cached per deviations directory: the tests share one run per process)."""
    directory = Path(deviations_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "fake-nan.toml").write_text(DEVIATION, encoding="utf-8")
    adapters = [fakes.GoodAdapter(), fakes.NaNAdapter(), fakes.WrongShapeAdapter()]
    return run_audit([*TARGETS, *adapters], registry=REGISTRY, deviations_dir=directory, progress=False)
