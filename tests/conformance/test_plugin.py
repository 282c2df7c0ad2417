"""The pytest plugin: one item per (target, check), mapped to pass / fail / skip / xfail.

Runs pytest in-process (pytester); the plugin comes from the entry point when the package is
installed, else from ``-p``. Checks come from the tests' isolated registry.
"""

from importlib.metadata import entry_points

import pytest

pytestmark = pytest.mark.claim("attention.formula")

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
            "*fake-nan::dummy.attention*",
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
    result.stdout.fnmatch_lines(["*known deviation: planted NaN*"])


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
    result.stdout.fnmatch_lines(["collected 4 items", "*<ConformanceItem fake-nan::deviations>*"])
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
