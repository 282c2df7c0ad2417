"""The search driver (conformance/search.py): hypothesis draws the inputs, shrinks a failure to a
minimal case, and the reported seed or example replays it exactly; the ci profile is derandomized and
the kernel profile draws from its block-boundary size sets."""

import json
from dataclasses import replace

import pytest
import torch
from hypothesis import find, given, settings
from hypothesis import strategies as st

from tests.conformance import fakes
from transformer_conformance.adapter import Capability
from transformer_conformance.api import SEED_ENV, ReportPaths, UsageError, default_seed, run_audit
from transformer_conformance.checks.inputs import AttnCase, search_cases
from transformer_conformance.checks.layers import batch_keep, same_rows
from transformer_conformance.checks.models import (
    CACHE_WITH_PADDING,
    SEQ,
    _ids,
    _Pipeline,
    lm_cache_with_padding,
)
from transformer_conformance.context import CI_SEED, PROFILES, CheckContext, CheckFailure, FailureKind
from transformer_conformance.mutants import lm_step_pads_prefill_only
from transformer_conformance.registry import Registry
from transformer_conformance.search import search
from transformer_conformance.strategies import (
    BATCH_SIDES,
    KERNEL_LENGTHS,
    KERNEL_PAIRS,
    KERNEL_WIDTHS,
    SEQ2SEQ_SIDES,
    attention_example,
    cache_schedule,
    invalid_temperatures,
    lm_batch_example,
    padded_batch_example,
    padded_cache_example,
    padding_lengths,
    seq2seq_example,
)

OFF_BY_ONE = "mutant.attention-causal-off-by-one"
CAUSAL = "mask.causal.is-causal"
PEEK = "mutant.lm-causal-peeks-ahead"
CACHE_PAD = "lm.cache-with-padding"
LM = Capability.DECODER_LM


def _result(**kwargs):
    report = run_audit([OFF_BY_ONE], profile="ci", check=CAUSAL, **kwargs)
    (result,) = report.results
    assert result.status == "fail", result.message
    return result


def _stable(result) -> dict:
    data = result.to_json()
    for key in ("duration_s", "target_time_s", "harness_time_s"):
        data.pop(key)
    if (data.get("counterexample") or {}).get("shrink"):
        data["counterexample"]["shrink"].pop("seconds")
    return data


def test_planted_off_by_one_causal_bug_shrinks_to_the_smallest_case(tmp_path):
    # isolated (the default): the target runs in its worker, the driver where the check runs
    paths = ReportPaths(json=tmp_path / "r.json", markdown=tmp_path / "r.md")
    result = _result(report_paths=paths)
    counter = result.counterexample
    assert counter["sizes"] == {"b": 1, "h": 1, "nq": 2, "nk": 2, "d": 1, "dv": 1}
    assert counter["source"] == "drawn" and counter["shrink"]["replays"] <= PROFILES["ci"].shrink_calls
    # the offending query and key: query 0 moved when key 1 (its future) changed
    leaks = counter["causality"]["leaks"]
    assert [(leak["output"], leak["input"]) for leak in leaks] == [(0, 1)]
    assert counter["offending"]["at"]["query"] == 0
    assert {"target", "oracle", "difference"} <= set(counter["offending"])
    assert "nq=2 nk=2" in result.message
    # the reports show it (the JSON one validates against the schema: conftest)
    data = json.loads(paths.json.read_text())
    assert data["results"][0]["counterexample"]["sizes"]["nk"] == 2
    markdown = paths.markdown.read_text()
    assert "minimal counterexample" in markdown and "query 0 moved" in markdown
    assert "--example" in result.repro


def test_replay_from_the_seed_and_from_the_example_is_exact():
    first = _result(in_process=True)
    again = _result(in_process=True, seed=first.seed)
    assert _stable(again) == _stable(first)
    replayed = _result(in_process=True, example=first.counterexample["replay"])
    assert replayed.message == first.message and replayed.measured == first.measured
    assert replayed.counterexample["source"] == "replay"
    assert replayed.counterexample["example"] == first.counterexample["example"]
    assert replayed.inputs == first.inputs


def test_ci_profile_is_derandomized():
    checks = [CAUSAL, "mask.causal.differential", "attention.shapes"]
    runs = [run_audit([OFF_BY_ONE], profile="ci", check=checks, in_process=True) for _ in range(2)]
    assert [_stable(r) for r in runs[0].results] == [_stable(r) for r in runs[1].results]


def test_the_seed_variable_pins_every_profile_and_a_bad_value_is_refused(monkeypatch):
    monkeypatch.setenv(SEED_ENV, "12345")
    runs = [run_audit([OFF_BY_ONE], profile="quick", check=[CAUSAL], in_process=True) for _ in range(2)]
    assert [r.results[0].seed for r in runs] == [12345, 12345]
    assert _stable(runs[0].results[0]) == _stable(runs[1].results[0])
    explicit = run_audit([OFF_BY_ONE], profile="quick", check=[CAUSAL], in_process=True, seed=3)
    assert explicit.results[0].seed == 3  # --seed wins over the variable
    monkeypatch.setenv(SEED_ENV, "soon")
    with pytest.raises(UsageError, match=r"TRANSFORMER_CONFORMANCE_SEED.*'soon'"):
        run_audit([OFF_BY_ONE], profile="quick", check=[CAUSAL], in_process=True)
    monkeypatch.delenv(SEED_ENV)
    seeds = {default_seed(derandomized=False) for _ in range(4)}
    assert len(seeds) > 1 and default_seed(derandomized=True) == CI_SEED


def test_no_shrink_reports_the_first_failing_example():
    result = _result(in_process=True, shrink=False)
    assert result.counterexample["source"] == "fixed" and "shrink" not in result.counterexample
    assert "--no-shrink" in result.repro


def _context(profile: str, seed: int = 7) -> CheckContext:
    return CheckContext(
        fakes.GoodAdapter(),
        device=torch.device("cpu"),
        dtype=torch.float32,
        profile=PROFILES[profile],
        seed=seed,
        check_id="x",
    )


def test_kernel_profile_draws_from_its_size_sets():
    ctx = _context("kernel")
    seen: list[AttnCase] = []
    search_cases(ctx, seen.append, fixed=[], examples=30)
    assert seen
    pairs = set(KERNEL_PAIRS)
    for case in seen:
        assert (case.nq, case.nk) in pairs or {case.nq, case.nk} <= set(KERNEL_LENGTHS)
        assert case.d in KERNEL_WIDTHS or case.b == case.h == 1  # narrowed only to fit the budget
    assert any(case.nk >= 1023 or case.nq >= 1023 for case in seen)


SIMPLEST_LM = {"b": 1, "n": 1, "side": "right", "lengths": [1], "data": 0}


def test_drawn_examples_of_a_check_with_fixed_cases_vary_with_the_seed():
    # hypothesis tries the simplest example first whatever its seed: a check with fixed cases (which
    # hold its smallest sizes) skips it, so its one drawn model example at ci is a random one
    fixed = {"b": 2, "n": 3, "side": "left", "lengths": [3, 1]}
    drawn = []
    for seed in (1, 2, 3, 4):
        seen: list[dict] = []
        search(_context("ci", seed), seen.append, fixed=[fixed], strategy=lm_batch_example(), examples=1)
        assert len(seen) == 2 and seen[0]["lengths"] == [3, 1] and seen[1] != SIMPLEST_LM
        drawn.append(seen[1])
    assert len({json.dumps(e, sort_keys=True) for e in drawn}) > 1
    # ... but when a fixed case fails, the simplest example is tried too (often the minimal failure)
    seen = []

    def prop(example):
        seen.append(example)
        raise CheckFailure(FailureKind.PROPERTY, "always")

    with pytest.raises(CheckFailure) as info:
        search(_context("ci"), prop, fixed=[fixed], strategy=lm_batch_example(), examples=1)
    assert SIMPLEST_LM in seen and info.value.counterexample["example"] == SIMPLEST_LM


def test_shrinking_stays_within_the_budget_and_keeps_the_failure_kind():
    ctx = _context("ci")
    calls = []

    def prop(example):
        calls.append(example)
        if example["nk"] >= 3:
            raise CheckFailure(FailureKind.PROPERTY, f"nk={example['nk']}")

    with pytest.raises(CheckFailure) as info:
        search(ctx, prop, strategy=attention_example(), examples=50)
    assert info.value.counterexample["sizes"]["nk"] == 3
    assert len(calls) <= PROFILES["ci"].shrink_calls + 2


def test_strategies_cover_padding_and_cache_schedules():
    gen = torch.Generator().manual_seed(0)
    lengths, sides = padding_lengths(gen, {"b": 4, "padding": "mixed"}, 5)
    assert lengths[0] == 5 and sides == ["right", "left", "right", "left"]
    lengths, _ = padding_lengths(gen, {"b": 2, "padding": "whole-sample"}, 5)
    assert lengths == [5, 0]


@pytest.mark.parametrize("strategy", [lm_batch_example(batch=(2, 3)), padded_cache_example(batch=(2, 3))])
@pytest.mark.parametrize("side", BATCH_SIDES)
def test_lm_strategies_reach_every_padding_side(strategy, side):
    """The decoder-only checks draw right-, left- and mixed-padded batches (and cached prompts)."""
    example = find(strategy, lambda e: e["side"] == side, settings=settings(database=None))
    lengths = [int(n) for n in example["lengths"]]
    n = int(example["n"] if "n" in example else example["prompt"])
    keep = batch_keep(_context("ci"), lengths, n, side)
    assert keep.sum(-1).tolist() == lengths
    for i, row in enumerate(keep.tolist()):  # mixed: even samples right-padded, odd ones left-padded
        left = side == "left" or (side == "mixed" and i % 2 == 1)
        real, pads = [True] * lengths[i], [False] * (n - lengths[i])
        assert row == (pads + real if left else real + pads)


@settings(max_examples=20, database=None)
@given(cache_schedule(6))
def test_cache_schedules_cover_the_prompt(schedule):
    assert sum(schedule) == 6 and all(n >= 1 for n in schedule)


@settings(max_examples=40, database=None)
@given(
    padded_batch_example(
        batch=(2, 4),
        dims={"t": (2, 7), "s": (1, 5)},
        empty=True,
        others=True,
        extras={"cut": lambda e: st.integers(1, e["t"] - 1)},
    )
)
def test_padded_batches_fit_their_sizes(example):
    b = example["b"]
    assert 2 <= b <= 4 and example["side"] in BATCH_SIDES and 1 <= example["cut"] < example["t"]
    for dim in ("t", "s"):
        assert len(example[f"{dim}_lens"]) == b and len(example[f"{dim}_others"]) == b - 1
        assert all(0 <= n <= example[dim] for n in example[f"{dim}_lens"] + example[f"{dim}_others"])
    assert example["t_lens"].count(0) == 1 and 0 not in example["s_lens"]  # one empty sample, first dim
    assert json.loads(json.dumps(example)) == example  # replayable from its JSON


def test_lm_causality_failure_shows_the_shortest_sequence_token_ids_and_the_moved_positions(tmp_path):
    # lm.causality searches sequence lengths: the peek-ahead bug shrinks to the shortest sequence; the
    # counterexample names the token ids and which logits moved for which changed token
    paths = ReportPaths(markdown=tmp_path / "r.md")
    report = run_audit([PEEK], profile="ci", check="lm.causality", report_paths=paths)
    (result,) = report.results
    assert result.status == "fail", result.message
    counter = result.counterexample
    assert counter["sizes"] == {"n": 2}
    assert counter["shapes"]["ids"][-1] == 2
    assert all(isinstance(i, int) for i in counter["token_ids"]["ids"])
    leaks = counter["causality"]["leaks"]
    assert [(leak["output"], leak["input"]) for leak in leaks] == [(0, 1)]
    assert counter["offending"]["target"] is not None and counter["offending"]["difference"] is not None
    markdown = paths.markdown.read_text()
    assert "token ids ids:" in markdown and "changed token 1" in markdown and "input shapes:" in markdown


#: One check that compares without the search driver (every built-in property check searches).
UNSEARCHED = Registry()


@UNSEARCHED.check(
    "lm.teacher-forcing-fixed",
    claims=("training.parallel-equals-sequential",),
    needs=(LM,),
    kind="metamorphic",
)
def _teacher_forcing_fixed(ctx: CheckContext) -> None:
    """lm.teacher-forcing on one fixed batch, called directly (no search)."""
    p = _Pipeline(ctx, LM)
    ids = _ids(ctx, p.cfg, p.b, SEQ)
    full = p.full(ids)
    for t in range(SEQ):
        same_rows(ctx, f"position {t}", full[:, t : t + 1], p.full(ids[:, : t + 1])[:, t : t + 1], None)


def test_a_check_that_does_not_search_still_reports_shapes_token_ids_and_the_offending_entry():
    report = run_audit([PEEK], profile="ci", registry=UNSEARCHED, in_process=True, progress=False)
    (result,) = report.results
    assert result.status == "fail", result.message
    counter = result.counterexample
    assert "example" not in counter
    assert counter["shapes"] and counter["token_ids"]
    assert {"index", "target", "oracle", "difference"} <= set(counter["offending"])


def test_decoder_layer_causality_failure_shrinks_to_the_smallest_layer_case():
    # decoder_layer.causality draws batch, lengths, the cut and the padding: the planted bug (no causal
    # mask without a target padding mask) fails the fixed 2 x 6 cuts and every drawn unpadded case;
    # hypothesis shrinks it to one sample of two positions over a memory of one, cut at 1, unpadded
    report = run_audit(
        ["mutant.decoder-layer-causal-only-with-padding"],
        profile="ci",
        seed=11,
        check="decoder_layer.causality",
        in_process=True,
    )
    (result,) = report.results
    assert result.status == "fail", result.message
    counter = result.counterexample
    assert counter["source"] == "drawn" and counter["shrink"]["replays"] <= PROFILES["ci"].shrink_calls
    assert counter["sizes"] == {"b": 1, "t": 2, "s": 1, "cut": 1}
    assert counter["example"]["side"] == "none"
    assert counter["shapes"]["x"] == [1, 2, counter["shapes"]["x"][2]] and counter["shapes"]["memory"][1] == 1
    assert "before position 1" in result.message
    # the reported example replays exactly
    again = run_audit(
        ["mutant.decoder-layer-causal-only-with-padding"],
        profile="ci",
        seed=11,
        check="decoder_layer.causality",
        in_process=True,
        example=counter["replay"],
    )
    (replayed,) = again.results
    assert replayed.status == "fail" and replayed.message == result.message


def test_lm_cache_with_padding_shrinks_a_warm_cache_padding_bug_to_the_smallest_schedule():
    # the planted bug drops the pad mask of chunks on a warm cache: a padded prompt prefilled in one
    # chunk then decoded token by token (the first fixed case) does not show it; drawn schedules do,
    # and the failure shrinks to one sample, a left-padded prompt of 3 with one real token, prefilled
    # in chunks of 1 then 2. Shrinking bounded by replays only (no seconds budget): derandomized.
    profile = replace(PROFILES["ci"], model_examples=6, shrink_calls=60, shrink_s=1e9)

    def context(**kwargs):
        adapter = lm_step_pads_prefill_only.make()
        cpu, f32 = torch.device("cpu"), torch.float32
        return CheckContext(
            adapter, device=cpu, dtype=f32, profile=profile, seed=2, check_id=CACHE_PAD, **kwargs
        )

    first = {"b": 3, "prompt": 5, "generated": 3, "lengths": [1, 5, 3], **CACHE_WITH_PADDING[0], "data": 0}
    lm_cache_with_padding(context(replay={"search": 0, "example": first}))  # passes
    with pytest.raises(CheckFailure) as info:
        lm_cache_with_padding(context())
    counter = info.value.counterexample
    assert counter["source"] == "drawn" and counter["shrink"]["replays"] <= 60
    example = {k: v for k, v in counter["example"].items() if k != "data"}
    assert example == {"b": 1, "prompt": 3, "generated": 0, "side": "left", "lengths": [1], "chunks": [1, 2]}
    assert "schedule [1, 2]: cached step at positions 1..2 (warm cache of 1)" in info.value.message
    # the recorded token ids and pad mask are those of the minimal case
    assert len(counter["token_ids"]["ids"]) == 3 and counter["shapes"]["pad_mask"] == [1, 3]


def test_encdec_memory_permutation_failure_shrinks_to_two_source_positions_swapped():
    # encdec.memory-permutation draws batches, lengths and permutations: the positional bias on the memory
    # shrinks to one sample, two source positions swapped and one target token
    report = run_audit(
        ["mutant.encdec-memory-positions"], profile="ci", seed=11, check="encdec.memory-permutation"
    )
    (result,) = report.results
    assert result.status == "fail", result.message
    counter = result.counterexample
    assert counter["source"] == "drawn"
    assert counter["sizes"] == {"b": 1, "s": 2, "n": 1}
    assert counter["example"]["perm"] == [1, 0] and counter["example"]["src_lengths"] == [2]
    assert "permuted by [1, 0]" in result.message
    assert counter["shapes"]["src"] == [1, 2] and counter["shapes"]["tgt"] == [1, 1]
    assert all(isinstance(i, int) for i in counter["token_ids"]["src"])
    # the reported example replays exactly
    replayed = run_audit(
        ["mutant.encdec-memory-positions"],
        profile="ci",
        seed=11,
        check="encdec.memory-permutation",
        example=counter["replay"],
        in_process=True,
    ).results[0]
    assert replayed.status == "fail" and replayed.counterexample["source"] == "replay"
    assert replayed.message == result.message


@settings(max_examples=40, database=None, derandomize=True)
@given(seq2seq_example(sides=SEQ2SEQ_SIDES, schedule=True, permutation=True))
def test_seq2seq_examples_are_consistent(example):
    b, s, n = example["b"], example["s"], example["n"]
    assert len(example["src_lengths"]) == len(example["tgt_lengths"]) == b
    assert all(1 <= x <= s for x in example["src_lengths"])
    assert all(1 <= x <= n for x in example["tgt_lengths"])
    assert sum(example["chunks"]) == n and example["side"] in SEQ2SEQ_SIDES
    assert sorted(example["perm"]) == list(range(s)) and (s == 1 or example["perm"] != list(range(s)))
    json.dumps(example)


@settings(max_examples=60, database=None, derandomize=True)
@given(invalid_temperatures())
def test_invalid_temperatures_are_negative_nan_or_zero(text):
    t = float(text)
    assert t != t or t <= 0.0  # NaN, negative (to -inf) or a zero (greedy or an error per convention)
    assert json.loads(json.dumps(text)) == text
