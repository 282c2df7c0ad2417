"""The search driver: a check's property against the target, fixed cases first, then hypothesis.

``search(ctx, prop, fixed=..., strategy=...)`` runs ``prop(example)`` on each fixed example of the
check, then on ``ctx.examples`` examples drawn by hypothesis from ``strategy``
(``conformance/strategies.py``), seeded from the run seed, the check ID and the search's index in the
check (so the ``ci`` profile, whose run seed is fixed, is derandomized and every run replays from its
``--seed``). Before each example the check's generator is reseeded with the example's ``data`` seed:
an example determines its tensors. A failure is shrunk by hypothesis to a minimal example failing
the same way (same ``FailureKind``) within the profile's shrink budget (``shrink_calls`` replays,
``shrink_s`` seconds; ``ctx.shrink`` False: no shrinking), and the smallest failing example found is
run once more, last, so the failure raised, the recorded inputs and ``--save-inputs`` are those of
the minimal case. The failure carries a ``counterexample``: the example (replayed exactly by
``--example``), its sizes, the offending entry (index, target, oracle, difference), the token ids
and, for a causality failure, which outputs moved when which inputs were perturbed.

The driver runs where the check runs (the audit process, or the check's thread in process); the target
stays in its worker (``conformance/isolation.py``): hypothesis only draws sizes and seeds.
"""

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from torch import Tensor

from transformer_conformance.context import CheckContext, CheckFailure, derive_seed
from transformer_conformance.strategies import Example

#: Most token ids (integer tensors' entries) a counterexample lists.
MAX_IDS = 64
#: Most causality leaks (output, input) a counterexample lists.
MAX_LEAKS = 16
#: Names of the first dimensions of a compared tensor, by the example's sizes.
SIZE_DIMS = (("b", "batch"), ("h", "head"))


class _Found(Exception):
    """Raised to hypothesis for a failing example (hypothesis never sees the check's own failure)."""


@dataclass
class _State:
    budget_calls: int
    budget_s: float
    kind: Any = None
    calls: int = 0
    started: float = 0.0
    failures: list[tuple[int, Example, CheckFailure]] = field(default_factory=list)
    error: BaseException | None = None
    #: the check has fixed cases: one example on top of the drawn ones, the simplest (see _hypothesis)
    extra: int = 0
    #: ... and they all passed: the simplest example is not run (the fixed cases hold the smallest sizes)
    skip_simplest: bool = False

    def exhausted(self) -> bool:
        if not self.failures:
            return False
        return self.calls >= self.budget_calls or time.perf_counter() - self.started > self.budget_s


def example_size(example: Example) -> tuple[int, ...]:
    """The order in which counterexamples count as smaller: total of the sizes, then each size."""
    sizes = [int(v) for k, v in sorted(example.items()) if k != "data" and isinstance(v, int | bool)]
    return (sum(sizes), *sizes)


def _run_one(ctx: CheckContext, prop: Callable[[Example], None], example: Example) -> CheckFailure | None:
    ctx.generator.manual_seed(int(example.get("data", 0)))
    try:
        prop(dict(example))
    except CheckFailure as failure:
        return failure
    return None


def search(
    ctx: CheckContext,
    prop: Callable[[Example], None],
    *,
    fixed: Sequence[Example] = (),
    strategy: st.SearchStrategy[Example] | None = None,
    examples: int | None = None,
) -> None:
    """Run ``prop`` on the ``fixed`` examples, then on ``examples`` (default ``ctx.examples``) drawn
    from ``strategy``; raise the minimal failure found, with its ``counterexample`` (see the module
    docstring). ``ctx.replay`` set: run only the example it names (exact replay)."""
    index = ctx.searches
    ctx.searches += 1
    if ctx.replay is not None:
        if int(ctx.replay.get("search", 0)) != index:
            return
        example = dict(ctx.replay["example"])
        failure = _run_one(ctx, prop, example)
        if failure is not None:
            _attach(ctx, failure, index, example, "replay", None)
            raise failure
        return
    state = _State(ctx.profile.shrink_calls, ctx.profile.shrink_s, extra=int(bool(fixed)))
    first: tuple[Example, CheckFailure] | None = None
    for position, case in enumerate(fixed):
        data = case.get("data", derive_seed(ctx.seed, f"{ctx.check_id}#{index}.{position}") & 0xFFFFFFFF)
        example = {**case, "data": int(data)}
        failure = _run_one(ctx, prop, example)
        if failure is not None:
            first = (example, failure)
            state.kind = failure.kind
            break
    if first is not None and not ctx.shrink:
        _attach(ctx, first[1], index, first[0], "fixed", None)
        raise first[1]
    state.skip_simplest = bool(fixed) and first is None
    drawn = ctx.examples if examples is None else examples
    if strategy is not None and drawn > 0:
        _hypothesis(ctx, prop, strategy, drawn, index, state)
    candidates = [(example_size(e), -n, e, "drawn", f) for n, e, f in state.failures]
    if first is not None:
        candidates.append((example_size(first[0]), 1, first[0], "fixed", first[1]))
    if not candidates:
        return
    _, _, best, source, seen = min(candidates, key=lambda c: (c[0], c[1]))
    # Last: the raised failure and the recorded inputs are the minimal case's. A target that passes
    # it this time (flaky) is reported with the failure seen.
    failure = _run_one(ctx, prop, best) or seen
    shrink = None
    if state.started:
        shrink = {"replays": state.calls, "seconds": round(time.perf_counter() - state.started, 3)}
    _attach(ctx, failure, index, best, source, shrink)
    raise failure


def _hypothesis(
    ctx: CheckContext,
    prop: Callable[[Example], None],
    strategy: st.SearchStrategy[Example],
    drawn: int,
    index: int,
    state: _State,
) -> None:
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if ctx.shrink else [])
    state.started = time.perf_counter()

    def test(example: Example) -> None:
        if state.skip_simplest:
            state.skip_simplest = False
            return
        if state.error is not None or state.exhausted():
            return  # out of budget: every further candidate counts as passing, hypothesis stops
        state.calls += 1
        try:
            failure = _run_one(ctx, prop, example)
        except BaseException as exc:  # NotApplicable, a harness error: re-raised after the search
            state.error = exc
            return
        if failure is None:
            return
        if state.kind is None:
            state.kind = failure.kind
        if failure.kind != state.kind:
            return  # another failure: not the one being shrunk
        state.failures.append((len(state.failures), dict(example), failure))
        raise _Found

    runner = settings(
        # hypothesis always tries the simplest example first (every draw at its minimum, whatever the
        # seed). A check with fixed cases gets it on top of ``drawn``, so ``drawn`` counts examples
        # that vary with the run seed (the 1 model example at ci is a random one, not always b=1, n=1);
        # it is run only when a fixed case failed (then it is often the minimal failure, and a cheap
        # start for shrinking); when they all passed it is skipped: they hold the smallest sizes
        max_examples=drawn + state.extra,
        database=None,
        deadline=None,
        phases=phases,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=Verbosity.quiet,
    )(hypothesis_seed(derive_seed(ctx.seed, f"{ctx.check_id}#search{index}"))(given(strategy)(test)))
    with contextlib.suppress(Exception):  # _Found, or hypothesis' flaky report when out of budget
        runner()
    if state.error is not None:
        raise state.error


def _attach(
    ctx: CheckContext,
    failure: CheckFailure,
    index: int,
    example: Example,
    source: str,
    shrink: dict[str, Any] | None,
) -> None:
    """Set ``failure.counterexample`` from the example, the failure and the recorded inputs."""
    sizes = {k: v for k, v in example.items() if k != "data" and type(v) is int}
    counter: dict[str, Any] = {
        "search": index,
        "example": example,
        "source": source,
        "sizes": sizes,
        "replay": json.dumps({"search": index, "example": example}, sort_keys=True, separators=(",", ":")),
    }
    if shrink is not None:
        counter["shrink"] = shrink
    counter.update(failure_detail(ctx, failure, example))
    failure.counterexample = counter


def failure_detail(
    ctx: CheckContext, failure: CheckFailure, example: Example | None = None
) -> dict[str, Any]:
    """The parts of a counterexample that come from the failure and the recorded inputs (also for a
    check that does not search, ``runner.counterexample_of``): the shapes of the recorded tensors, the
    offending entry (index named by dimension, target, oracle, difference), the token ids and the
    causality leaks."""
    detail: dict[str, Any] = {}
    shapes = {k: list(v.shape) for k, v in ctx.tensors.items() if isinstance(v, Tensor)}
    if shapes:
        detail["shapes"] = shapes
    offending = getattr(failure, "offending", None)
    if offending:
        detail["offending"] = name_dims(offending, example or {})
    ids = token_ids(ctx)
    if ids:
        detail["token_ids"] = ids
    leaks = causality_leaks(failure.evidence)
    if leaks is not None:
        detail["causality"] = leaks
    return detail


def name_dims(offending: dict[str, Any], example: Example) -> dict[str, Any]:
    """``offending`` with its index named by dimension (batch, head, query, key/feature) when the
    compared tensor has the example's [b, h, nq, ...] layout and no names were given."""
    entry = dict(offending)
    shape = entry.get("shape", [])
    layout = len(shape) == 4 and shape[0] == example.get("b") and shape[1] == example.get("h")
    if "dims" not in entry and layout:
        last = "key" if shape[3] == example.get("nk") and shape[3] != example.get("dv") else "feature"
        entry["dims"] = ["batch", "head", "query", last]
    if "dims" in entry:
        entry["at"] = dict(zip(entry["dims"], entry["index"]))
    return entry


def token_ids(ctx: CheckContext) -> dict[str, list[Any]]:
    """The integer tensors among the recorded inputs (token ids, positions), at most ``MAX_IDS``
    entries each."""
    found: dict[str, list[Any]] = {}
    for key, value in ctx.tensors.items():
        if isinstance(value, Tensor) and not value.is_floating_point() and value.dtype.is_signed:
            found[key] = value.detach().cpu().flatten()[:MAX_IDS].tolist()
    return found


def causality_leaks(evidence: dict[str, Any]) -> dict[str, Any] | None:
    """From the ``influence`` evidence: the (output, input) positions where the output moved when
    that input alone was perturbed although the output may not see it (at most ``MAX_LEAKS``)."""
    influence = evidence.get("influence")
    if not isinstance(influence, dict):
        return None
    bound = influence.get("unchanged_below") or 0.0
    leaks = []
    for i, (row, seen) in enumerate(zip(influence.get("moved", []), influence.get("visible", []))):
        for j, (change, visible) in enumerate(zip(row, seen)):
            if not visible and (change is None or change > bound):
                leaks.append({"output": i, "input": j, "change": change})
    return {
        "where": influence.get("where", ""),
        "output": influence.get("rows", "output position"),
        "input": influence.get("cols", "perturbed input position"),
        "leaks": leaks[:MAX_LEAKS],
        "count": len(leaks),
    }
