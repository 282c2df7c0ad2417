"""The figures of SPEC.md: listed in render.FIGURES (stdlib), drawn by spec/figures.py into spec/figures/,
linked from SPEC.md, byte-deterministic, and never imported by the stdlib spec loader or renderer."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from transformer_conformance import spec
from transformer_conformance.spec.render import FIGURES, render

ROOT = Path(__file__).resolve().parents[2]
FIGURE_DIR = ROOT / "spec" / "figures"


def test_every_listed_figure_is_committed_linked_and_illustrates_known_claims():
    claims = spec.load_claims()
    text = render()
    assert sorted(p.name for p in FIGURE_DIR.glob("*.svg")) == sorted(FIGURES)
    for name, (_, ids) in FIGURES.items():
        assert f"](figures/{name})" in text
        for claim_id in ids:
            assert claim_id in claims, f"{name} names unknown claim {claim_id}"
            section = text.split(f"### `{claim_id}`", 1)[1].split("\n### ", 1)[0]
            assert f"(figures/{name})" in section


def test_renderer_and_loader_import_neither_matplotlib_nor_torch(tmp_path):
    code = (
        "import sys, transformer_conformance.spec.render as r; r.render(); "
        "print('matplotlib' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.slow
def test_figures_are_byte_deterministic_and_up_to_date():
    pytest.importorskip("matplotlib", reason="the spec figures need the html extra (matplotlib)")
    import matplotlib

    from transformer_conformance.spec import figures

    first, second = figures.render_all(), figures.render_all()
    assert first == second
    for name, data in first.items():
        assert data.lstrip().startswith(b"<?xml") and b"<dc:date>" not in data
        committed = (FIGURE_DIR / name).read_bytes()
        made_by = re.search(rb"Matplotlib v([0-9.]+)", committed)
        if made_by is None or made_by.group(1).decode() != matplotlib.__version__:
            continue  # drawn by another matplotlib version: its bytes may legitimately differ
        assert data == committed, f"spec/figures/{name} is stale: run `make spec`"
