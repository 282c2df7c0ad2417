"""The one import namespace: every package folder is shipped under ``transformer_conformance``, and the
spec and the plugin's top package load without torch (the plugin must stay cheap in other projects)."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"conformance": "transformer_conformance", "reference": "transformer_conformance.reference",
           "spec": "transformer_conformance.spec"}


def shipped_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    mapping = config["package-dir"]
    assert {folder: name for name, folder in mapping.items()} == FOLDERS
    return set(config["packages"])


def package_folders() -> set[str]:
    found = set()
    for folder, name in FOLDERS.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join((name, *rel.parts)))
    return found


def test_every_package_folder_is_shipped_and_nothing_else():
    assert shipped_packages() == package_folders()


def test_no_module_imports_a_bare_top_level_name():
    bare = ("from spec", "import spec", "from reference", "import reference", "from conformance",
            "import conformance")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for top in ("spec", "reference", "conformance", "tests", "benchmarks")
        for path in (ROOT / top).rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.lstrip().startswith(bare) and line.lstrip().split()[1].split(".")[0] in
        ("spec", "reference", "conformance")
    ]
    assert offenders == []


def test_spec_and_top_package_import_without_torch(tmp_path):
    code = "import sys, transformer_conformance.spec as s; s.load_claims(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "False"
