"""Entry points from a user's directory: ``--impl`` modules import from the cwd in the console script,
``python -m`` and the plugin; ``CONFORMANCE_IMPL``; repro commands that carry ``--path``; and
``--deviations DIR`` adding to the built-in deviation files."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from transformer_conformance.api import run_audit
from transformer_conformance.runner import KNOWN_DEVIATION

SCALED = '''
import torch
from transformer_conformance.adapter import Adapter, Capability


class Scaled(Adapter):
    """softmax(q k^T / d) v: the scale bug (1/d instead of 1/sqrt(d))."""

    name = "user-scaled"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(self, q, k, v, *, mask, is_causal):
        weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1], dim=-1)
        return weights @ v, weights


def make():
    return Scaled()
'''
CHECK = ("--check", "attention.differential", "--profile", "quick")


def user_project(root: Path) -> Path:
    """A project directory with its own ``userpkg`` adapter package."""
    (root / "userpkg").mkdir(parents=True)
    (root / "userpkg" / "__init__.py").write_text("")
    (root / "userpkg" / "mod.py").write_text(SCALED)
    return root


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CONFORMANCE_IMPL")}
    return {**env, **extra}


def run(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def console_script() -> str:
    script = Path(sys.executable).with_name("transformer-conformance")
    if not script.exists():
        pytest.skip("the console script is not installed in this environment")
    return str(script)


@pytest.mark.slow
def test_console_script_and_dash_m_import_the_adapter_from_the_cwd(tmp_path):
    project = user_project(tmp_path / "proj")
    for entry in ([console_script()], [sys.executable, "-m", "transformer_conformance"]):
        proc = run([*entry, "run", "--impl", "userpkg.mod:make", *CHECK], project)
        assert proc.returncode == 1, proc.stderr  # the planted scale bug fails
        assert "FAIL user-scaled :: attention.differential" in proc.stdout


@pytest.mark.slow
def test_impl_from_the_environment_variable(tmp_path):
    project = user_project(tmp_path / "proj")
    proc = run([console_script(), "run", *CHECK], project, CONFORMANCE_IMPL="userpkg.mod:make")
    assert proc.returncode == 1 and "FAIL user-scaled :: attention.differential" in proc.stdout
    proc = run([console_script(), "run", *CHECK], project)
    assert proc.returncode == 2 and "--impl" in proc.stderr  # neither given: a usage error


@pytest.mark.slow
def test_repro_of_an_out_of_tree_adapter_carries_its_path_and_reruns_elsewhere(tmp_path):
    adapters = user_project(tmp_path / "adapters")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = tmp_path / "r.json"
    proc = run([sys.executable, "-m", "transformer_conformance", "run", "--impl", "userpkg.mod:make",
                "--path", str(adapters), *CHECK, "--json", str(report)], elsewhere)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    (failing,) = [r for r in json.loads(report.read_text())["results"] if r["status"] == "fail"]
    assert f"--path {adapters.resolve()}" in failing["repro"]
    # as printed, from a third directory: the --path option finds the adapter
    rerun = run(shlex.split(failing["repro"]), tmp_path)
    assert rerun.returncode == 1, rerun.stderr
    assert "FAIL user-scaled :: attention.differential" in rerun.stdout


def test_deviations_dir_adds_to_the_builtin_files(tmp_path):
    check = "mha.padding.nan-contents"
    other = tmp_path / "mine"
    other.mkdir()
    (other / "torch-mha.toml").write_text(
        '[[deviation]]\nclaim = "attention.formula"\ncheck = "no.such.check"\ncategory = "bug"\n'
        'reason = "x"\n'
    )
    report = run_audit(["torch-mha"], check=check, deviations_dir=other, progress=False)
    (result,) = report.results
    assert result.status == KNOWN_DEVIATION  # the built-in entry still applies
    assert result.deviation is not None and result.deviation["source"].endswith("deviations/torch-mha.toml")
    assert [s["entry"] for s in report.stale] == ["attention.formula / check no.such.check (bug): x"]


def test_user_entry_for_the_same_claim_and_check_replaces_the_builtin_one(tmp_path):
    check = "mha.padding.nan-contents"
    (tmp_path / "torch-mha.toml").write_text(
        f'[[deviation]]\nclaim = "mask.padding.nonfinite-isolated"\ncheck = "{check}"\ncategory = "bug"\n'
        'reason = "ours: we track it upstream"\n'
    )
    report = run_audit(["torch-mha"], check=check, deviations_dir=tmp_path, progress=False)
    (result,) = report.results
    assert result.status == KNOWN_DEVIATION and report.stale == []
    assert result.deviation is not None and result.deviation["reason"] == "ours: we track it upstream"
    assert result.deviation["source"] == str(tmp_path / "torch-mha.toml")
