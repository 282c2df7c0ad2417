"""The pytest plugin: one item per (target, check), mapped to pass / fail / skip / xfail.

Runs pytest in-process (pytester); the plugin comes from the entry point when the package is
installed, else from ``-p``. Checks come from the tests' isolated registry.
"""

from importlib.metadata import entry_points

import pytest

# Once the package is installed, pytest loads the plugin from its entry point; before, name it.
INSTALLED = any(ep.name == "transformer_conformance" for ep in entry_points(group="pytest11"))
LOAD = () if INSTALLED else ("-p", "transformer_conformance.pytest_plugin")
PLUGIN = (*LOAD, "--conformance-checks-from", "tests.conformance.fakes:REGISTRY")
NAN = ("--conformance-impl", "tests.conformance.fakes:make_nan")


def test_items_per_check_fail_skip_and_pass(pytester):
    result = pytester.runpytest(*PLUGIN, *NAN, "-rA")
    # dummy.attention fails (NaN), dummy.rows is blocked, dummy.layernorm not applicable, deviations ok
    result.assert_outcomes(failed=1, skipped=2, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ fake-nan :: dummy.attention _*",
            "*FAIL fake-nan :: dummy.attention [[]nonfinite[]]*",
            "*repro: *python -m transformer_conformance run --impl tests.conformance.fakes:make_nan"
            " --check dummy.attention*",
        ]
    )
    result.stdout.fnmatch_lines(["*blocked: blocked by dummy.attention*"])
    result.stdout.fnmatch_lines(["*not-applicable: target does not declare capability layer_norm*"])


def test_known_deviation_is_xfail(pytester):
    devs = pytester.mkdir("devs")
    (devs / "fake-nan.toml").write_text(
        '[[deviation]]\nclaim = "attention.formula"\ncategory = "bug"\nreason = "planted NaN"\n'
    )
    result = pytester.runpytest(*PLUGIN, *NAN, "--conformance-deviations", str(devs), "-rA")
    result.assert_outcomes(xfailed=1, skipped=2, passed=1)
    result.stdout.fnmatch_lines(["*known deviation (bug): planted NaN*"])


def test_stale_deviation_is_a_failing_item(pytester):
    devs = pytester.mkdir("devs")
    (devs / "fake-good.toml").write_text(
        '[[deviation]]\nclaim = "attention.formula"\ncategory = "bug"\nreason = "fixed since"\n'
    )
    result = pytester.runpytest(
        *PLUGIN,
        "--conformance-impl",
        "tests.conformance.fakes:make_good",
        "--conformance-deviations",
        str(devs),
    )
    result.assert_outcomes(failed=1, passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*stale deviation*matches no failing check*"])


def test_without_the_option_the_plugin_adds_nothing(pytester):
    pytester.makepyfile("def test_one():\n    assert True\n")
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1)


def test_unknown_target_is_a_usage_error(pytester):
    result = pytester.runpytest(*PLUGIN, "--conformance-impl", "no-such-target")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown target 'no-such-target'*"])


def test_collect_only_counts_the_items_and_k_selects_them(pytester):
    result = pytester.runpytest(*PLUGIN, *NAN, "--collect-only")
    assert result.ret == pytest.ExitCode.OK
    tree = ["*<TargetCollector fake-nan>*", "*<ConformanceItem deviations>*"]
    result.stdout.fnmatch_lines(["collected 4 items", *tree])
    result.stdout.fnmatch_lines(["*4 tests collected*"])
    result.stdout.no_fnmatch_line("*no tests collected*")
    # -k applies to conformance items like any other test; only the selected check runs
    result = pytester.runpytest(*PLUGIN, *NAN, "-k", "rows")
    result.assert_outcomes(passed=1, deselected=3)


def test_naming_the_plugin_with_dash_p_is_harmless(pytester):
    # with the package installed this used to abort: the entry point registered the module twice
    result = pytester.runpytest("-p", "transformer_conformance.pytest_plugin", *PLUGIN, *NAN)
    result.assert_outcomes(failed=1, skipped=2, passed=1)


HEAVY = ("torch", "transformers", "jaxtyping", "beartype", "numpy")
PROBE = f"""
import sys

HEAVY = {HEAVY!r}


def test_report_modules():
    mine = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY or m.startswith("transformer_"))
    print("MODULES=" + ",".join(mine))
"""


def loaded_modules(pytester, *args):
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    line = next(s for s in result.outlines if "MODULES=" in s)
    return set(line.partition("MODULES=")[2].split(",")) - {""}


def test_without_the_option_the_plugin_imports_nothing_heavy(pytester, monkeypatch):
    """A project that never asks for an audit pays for the plugin module only (no torch, reference,
    jaxtyping or transformers): compared with the same run with the plugin blocked, since other
    installed plugins (jaxtyping's own) may import their package."""
    pytester.makepyfile(PROBE)
    monkeypatch.delenv("CONFORMANCE_IMPL", raising=False)
    baseline = loaded_modules(pytester, "-p", "no:transformer_conformance")
    with_plugin = loaded_modules(pytester, *LOAD)
    assert "torch" not in with_plugin
    assert with_plugin - baseline == {"transformer_conformance", "transformer_conformance.pytest_plugin"}


def test_each_item_does_its_own_work_so_junit_times_are_real(pytester):
    result = pytester.runpytest(*PLUGIN, *NAN, "--junitxml", "out.xml")
    result.assert_outcomes(failed=1, skipped=2, passed=1)
    import xml.etree.ElementTree as ET

    tree = ET.parse(pytester.path / "out.xml")
    cases = {(c.get("classname"), c.get("name")): float(c.get("time")) for c in tree.iter("testcase")}
    assert set(cases) == {("conformance.fake-nan", n) for n in ("dummy.attention", "dummy.rows",
                                                                  "dummy.layernorm", "deviations")}
    assert cases[("conformance.fake-nan", "dummy.attention")] > 0  # it ran in its own item


def test_node_id_reruns_one_item_and_lf_reruns_the_failures(pytester):
    failing = "conformance::fake-nan::dummy.attention"
    result = pytester.runpytest("-p", "cacheprovider", *PLUGIN, *NAN, failing, "-rA")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines([f"FAILED {failing}*"])
    # a whole target by its node prefix
    result = pytester.runpytest("-p", "cacheprovider", *PLUGIN, *NAN, "conformance::fake-nan")
    result.assert_outcomes(failed=1, skipped=2, passed=1)
    result = pytester.runpytest("-p", "cacheprovider", *PLUGIN, *NAN, "--lf", "-rA")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines([f"FAILED {failing}*"])


def test_prerequisite_failed_earlier_blocks_but_one_not_run_does_not(pytester):
    # in order, dummy.rows follows the failing dummy.attention: blocked
    result = pytester.runpytest(*PLUGIN, *NAN, "-rA")
    result.stdout.fnmatch_lines(["*blocked: blocked by dummy.attention (fail)*"])
    # selected alone, its prerequisite did not run in this session: it runs (as `run --check` would)
    result = pytester.runpytest(*PLUGIN, *NAN, "conformance::fake-nan::dummy.rows")
    result.assert_outcomes(passed=1, deselected=3)


def test_claim_and_capability_markers_select_under_strict_markers(pytester):
    result = pytester.runpytest(*PLUGIN, *NAN, "--strict-markers", "-m", "claim(id='attention.formula')")
    result.assert_outcomes(failed=1, deselected=3)
    result = pytester.runpytest(*PLUGIN, *NAN, "--strict-markers", "-m", "capability(name='layer_norm')")
    result.assert_outcomes(skipped=1, deselected=3)
    result = pytester.runpytest(*PLUGIN, *NAN, "--strict-markers", "-m", "not conformance")
    result.assert_outcomes(deselected=4)
    # claim IDs are keywords too
    result = pytester.runpytest(*PLUGIN, *NAN, "-k", "attention.weights.rows-sum-to-one")
    result.assert_outcomes(passed=1, deselected=3)


@pytest.mark.slow
def test_xdist_runs_each_item_once_with_a_target_on_one_worker(pytester, monkeypatch):
    from .conftest import ROOT

    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("CONFORMANCE_IMPL", raising=False)
    both = ("--conformance-impl", "tests.conformance.fakes:make_nan,tests.conformance.fakes:make_good")
    result = pytester.runpytest_subprocess(*PLUGIN, *both, "-n", "2", "-v", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, skipped=3, passed=4)  # the serial outcome: each item ran once
    workers: dict[str, set[str]] = {}
    for line in result.outlines:
        if line.startswith("[gw") and "conformance::" in line:
            target = line.split("conformance::")[1].split("::")[0]
            workers.setdefault(target, set()).add(line.split("]")[0])
    assert set(workers) == {"fake-nan", "fake-good"} and all(len(w) == 1 for w in workers.values())
    result.stdout.fnmatch_lines(["*blocked: blocked by dummy.attention (fail)*"])  # deps seen on one worker


def test_items_run_in_the_target_worker_which_restarts_after_a_crash(pytester):
    """Isolation is the plugin's default too: a target that ends its process on its third call
    fails that item as ``exited``, pytest goes on, and the next item gets a fresh worker."""
    result = pytester.runpytest(
        *LOAD,
        "--conformance-checks-from",
        "tests.conformance.fakes:CRASH_REGISTRY",
        "--conformance-impl",
        "tests.conformance.fakes:make_crashing",
        "-rA",
    )
    result.assert_outcomes(passed=4, failed=1)  # 3 of 4 checks pass, and the deviations item
    result.stdout.fnmatch_lines(["*FAIL fake-crashing :: dummy.crash-2 [[]exited[]]*"])
    result.stdout.fnmatch_lines(["PASSED conformance::fake-crashing::dummy.crash-3"])


def test_a_target_that_exits_cannot_end_the_pytest_session(pytester):
    impl = ("--conformance-impl", "tests.conformance.hostile:make_exit_zero")
    result = pytester.runpytest(*PLUGIN, *impl, "-rA")
    result.assert_outcomes(failed=1, skipped=2, passed=1)
    result.stdout.fnmatch_lines(["*FAIL hostile-exit-0 :: dummy.attention [[]exited[]]*"])


def test_an_empty_target_fails_its_deviations_item_unless_allowed(pytester):
    impl = ("--conformance-impl", "tests.conformance.fakes:make_good")
    args = (*PLUGIN, *impl, "-k", "layernorm or deviations")
    result = pytester.runpytest(*args)
    result.assert_outcomes(failed=1, skipped=1, deselected=2)
    result.stdout.fnmatch_lines(["*EMPTY target fake-good: no selected check applied*"])
    result = pytester.runpytest(*args, "--conformance-allow-empty")
    result.assert_outcomes(passed=1, skipped=1, deselected=2)
