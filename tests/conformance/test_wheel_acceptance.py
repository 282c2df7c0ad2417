"""Acceptance (issue 12): the wheel, installed into a fresh environment beside a user's project that has
its own ``reference/`` and ``spec/`` packages, works from that project as a user would run it.

Nothing is downloaded: the wheel is built without build isolation from a copy of the sources, and the
fresh venv sees this environment's packages (torch, pytest, ...) through a ``.pth`` file, while the suite
itself comes only from the installed wheel (this environment's editable install is not activated there).
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import jsonschema
import pytest

from .conftest import ROOT, validate_report

pytestmark = pytest.mark.slow

USER_ADAPTER = '''
"""The user's attention kernel with a planted scale bug: scores divided by d instead of sqrt(d)."""

import torch

from transformer_conformance import Adapter, Capability


class Scaled(Adapter):
    name = "user-scaled"
    capabilities = frozenset({Capability.ATTENTION})

    def attention(self, q, k, v, *, mask, is_causal):
        scores = q @ k.transpose(-2, -1) / q.shape[-1]
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        if is_causal:
            nq, nk = q.shape[-2], k.shape[-2]
            keep = torch.ones(nq, nk, dtype=torch.bool, device=q.device).tril(nk - nq)
            scores = scores.masked_fill(~keep, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        return weights @ v, weights


def make():
    return Scaled()
'''
USER_TESTS = '''
import importlib
import sys

# the project's own top-level packages (imported by name: they are the user's, not the suite's)
reference = importlib.import_module("reference")
spec = importlib.import_module("spec")


def test_my_reference_package_is_mine():
    assert reference.OWNER == "user"


def test_my_spec_package_is_mine():
    assert spec.OWNER == "user"


def test_torch_is_not_imported_without_the_option():
    assert "torch" not in sys.modules and "transformer_conformance.reference" not in sys.modules
'''


def build_wheel(out: Path) -> Path:
    """``pip wheel --no-deps --no-build-isolation`` of a copy of the sources (nothing written here)."""
    src = out / "src"
    for name in ("conformance", "reference", "spec"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
         str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (wheel,) = out.glob("transformer_conformance-*.whl")
    return wheel


def fresh_venv(where: Path, wheel: Path) -> Path:
    """A venv whose only copy of the suite is the installed wheel; other packages come from this one's."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "host-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return python


def user_project(root: Path) -> Path:
    for package in ("reference", "spec", "userpkg"):
        (root / package).mkdir(parents=True)
    (root / "reference" / "__init__.py").write_text('OWNER = "user"\n')
    # were the suite to import this instead of its own oracle, the run would exit 9
    trap = "def scaled_dot_product_attention(*args, **kwargs):\n    raise SystemExit(9)\n"
    (root / "reference" / "attention.py").write_text(trap)
    (root / "spec" / "__init__.py").write_text('OWNER = "user"\n')
    (root / "userpkg" / "__init__.py").write_text("")
    (root / "userpkg" / "mod.py").write_text(USER_ADAPTER)
    (root / "tests").mkdir()
    (root / "tests" / "test_own.py").write_text(USER_TESTS)
    (root / "conftest.py").write_text("")  # rootdir conftest: the project root goes on sys.path
    return root


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    drop = ("PYTHONPATH", "CONFORMANCE_IMPL", "PYTEST_ADDOPTS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def outcome(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr


def test_installed_wheel_from_a_user_project(tmp_path):
    python = fresh_venv(tmp_path / "venv", build_wheel(tmp_path / "dist"))
    project = user_project(tmp_path / "proj")
    pytest_cmd = [str(python), "-m", "pytest", "-q", "-p", "no:randomly"]

    # 1. the project's own suite: unchanged by the plugin, and torch is not imported
    own = run([*pytest_cmd, "tests"], project)
    assert own.returncode == 0 and "3 passed" in outcome(own), own.stdout + own.stderr
    blocked = run([*pytest_cmd, "-p", "no:transformer_conformance", "tests"], project)
    assert outcome(blocked).split(" in ")[0] == outcome(own).split(" in ")[0]

    # 2. the console script from the project directory: the planted scale bug fails (exit 1), judged by
    #    the installed oracle, not the project's reference/ package
    script = python.with_name("transformer-conformance")
    report = tmp_path / "r.json"
    cli = run([str(script), "run", "--impl", "userpkg.mod:make", "--profile", "quick", "--seed", "7",
               "--json", str(report)], project)  # fmt: skip
    assert cli.returncode == 1, cli.stdout[-3000:] + cli.stderr[-3000:]
    data = json.loads(report.read_text())
    validate_report(data)
    # the schema ships in the wheel, and the report validates against that installed copy too
    code = "from transformer_conformance.report import SCHEMA_PATH; print(SCHEMA_PATH)"
    shipped = run([str(python), "-c", code], project)
    installed_schema = Path(shipped.stdout.strip())
    assert "site-packages" in installed_schema.parts
    jsonschema.Draft202012Validator(json.loads(installed_schema.read_text())).validate(data)
    failing = {r["check"]: r for r in data["results"] if r["status"] == "fail"}
    assert "attention.differential" in failing
    repros = [line.split("repro: ", 1)[1] for line in cli.stdout.splitlines() if "repro: " in line]
    assert sorted(repros) == sorted(r["repro"] for r in failing.values())
    # 3. every printed repro command reruns as printed: exit 1, the same check failing
    for repro in repros:
        again = run(shlex.split(repro), project)
        check = shlex.split(repro)[shlex.split(repro).index("--check") + 1]
        assert again.returncode == 1, (repro, again.stderr[-2000:])
        assert f"FAIL user-scaled :: {check} " in again.stdout

    # 4. pytest --conformance-impl: real items; --lf reruns the failures only; a node ID; -n 2
    audit = [*pytest_cmd, "--conformance-impl", "userpkg.mod:make", "--conformance-profile", "quick",
             "--conformance-seed", "7"]  # fmt: skip
    first = run(audit, project)
    assert first.returncode == 1
    counts = outcome(first).split(" in ")[0]
    n_failed = int(counts.split(" failed")[0].split()[-1])
    # the same checks fail as in the CLI run, plus the project's own probe (torch is imported now)
    failed_ids = {line.split()[1] for line in first.stdout.splitlines() if line.startswith("FAILED ")}
    assert failed_ids == {f"conformance::user-scaled::{c}" for c in failing} | {
        "tests/test_own.py::test_torch_is_not_imported_without_the_option"
    }
    assert n_failed == len(failed_ids)
    lf = run([*audit, "--lf"], project)
    assert outcome(lf).startswith(f"{n_failed} failed") and " passed" not in outcome(lf)
    node = "conformance::user-scaled::attention.differential"
    one = run([*audit, node], project)
    assert one.returncode == 1 and outcome(one).startswith("1 failed,") and "deselected" in outcome(one)
    spread = run([*audit, "-n", "2", "-p", "no:cacheprovider"], project)
    assert outcome(spread).split(" in ")[0] == counts
