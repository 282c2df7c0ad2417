"""The claims beyond the notes (architecture variants) are marked as such and rendered in their own part."""

from pathlib import Path

import pytest

from transformer_conformance import spec
from transformer_conformance.spec.render import render

ROOT = Path(__file__).resolve().parents[2]

PLANTED = """\
[[note]]
file = "n0.txt"
label = "N0"
title = "A planted note"
headings = ["Intro"]

[[claim]]
id = "rotary.planted"
area = "rotary"
title = "A title"
status = "holds"
statement = "A statement."
sources = [{note = "n0.txt", heading = "Intro"}]
components = ["rotary"]
"""


def test_every_beyond_notes_claim_is_a_project_claim_after_the_notes_part() -> None:
    claims = spec.load_claims()
    beyond = [c for c in claims.values() if c.area in spec.BEYOND_NOTES_AREAS]
    assert beyond and all(c.origin == "project" for c in beyond)
    text = render()
    part = text.index("# Beyond the notes: architecture variants")
    for claim in claims.values():
        position = text.index(f"### `{claim.id}`")
        assert (position > part) == (claim.area in spec.BEYOND_NOTES_AREAS), claim.id
    for area in spec.BEYOND_NOTES_AREAS:
        assert f"## {area} (beyond the notes)" in text[part:]


def test_loader_rejects_a_notes_claim_in_a_beyond_notes_area(tmp_path: Path) -> None:
    path = tmp_path / "claims.toml"
    path.write_text(PLANTED, encoding="utf-8")
    with pytest.raises(spec.SpecError, match="beyond the notes"):
        spec.load_claims(path)
