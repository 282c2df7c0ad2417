"""Render ``spec/SPEC.md`` from ``claims.toml`` and the claim references of tests and checks.

``python -m transformer_conformance.spec.render`` writes the document to stdout (UTF-8, byte-deterministic
for a given tree);
``make spec`` stores it as ``spec/SPEC.md``.
"""

import sys
from collections.abc import Mapping
from pathlib import Path

from transformer_conformance.spec import BEYOND_NOTES_AREAS, STATUSES, Claim, Note, load_claims, load_notes
from transformer_conformance.spec.links import collect

#: The figures of spec/figures/ (drawn by ``spec/figures.py``, run by ``make spec``): file name ->
#: (caption, the claims each illustrates). Kept here, stdlib only, so rendering needs no matplotlib.
FIGURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "masks.svg": (
        "Causal keep-masks (square; num_q < num_k in both alignments) and left/right padding masks",
        ("mask.causal.boolean-lower-triangular", "mask.causal.alignment", "mask.padding.invariance"),
    ),
    "sinusoidal.svg": (
        "The sinusoidal table and the dot product PE[p] . PE[p + k] against the offset k",
        ("positional.sinusoidal.formula", "positional.sinusoidal.offset-dot-product"),
    ),
    "refuted-diagonal-max.svg": (
        "Counterexample: a token attends more to a longer key in its own direction than to itself",
        ("attention.self.diagonal-max",),
    ),
    "refuted-params-heads.svg": (
        "Counterexample: the parameter count of multi-head attention for 1 to 16 heads",
        ("mha.params-independent-of-heads",),
    ),
    "refuted-unshifted-loss.svg": (
        "Counterexample: a copy model wins the unshifted loss and loses the next-token loss",
        ("loss.unshifted-as-stated",),
    ),
}


def figures_by_claim() -> dict[str, list[str]]:
    """Claim ID -> the figure files that illustrate it."""
    out: dict[str, list[str]] = {}
    for name, (_, claims) in FIGURES.items():
        for claim in claims:
            out.setdefault(claim, []).append(name)
    return out


def _md(text: str) -> str:
    """Escape the characters that would turn prose into markup (emphasis, inline HTML, tables)."""
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("<", "\\<").replace("|", "\\|")


def _areas(claims: Mapping[str, Claim]) -> dict[str, list[Claim]]:
    out: dict[str, list[Claim]] = {}
    for claim in claims.values():
        out.setdefault(claim.area, []).append(claim)
    return out


def _summary(areas: Mapping[str, list[Claim]], tested: Mapping[str, list[str]]) -> list[str]:
    lines = [
        "| Area | " + " | ".join(STATUSES) + " | total | untested |",
        "|---|" + "---:|" * (len(STATUSES) + 2),
    ]
    totals = [0] * (len(STATUSES) + 2)
    for area, claims in areas.items():
        counts = [sum(c.status == s for c in claims) for s in STATUSES]
        counts.append(len(claims))
        counts.append(sum(c.needs_test and c.id not in tested for c in claims))
        totals = [a + b for a, b in zip(totals, counts)]
        if area in BEYOND_NOTES_AREAS:
            link = f"[{area}](#{area}-beyond-the-notes) (beyond the notes)"
        else:
            link = f"[{area}](#{area})"
        lines.append(f"| {link} | " + " | ".join(str(n) for n in counts) + " |")
    lines.append("| **total** | " + " | ".join(f"**{n}**" for n in totals) + " |")
    return lines


def _claim_section(
    claim: Claim,
    notes: Mapping[str, Note],
    tests_by_claim: Mapping[str, list[str]],
    checks_by_claim: Mapping[str, list[str]],
    check_ids: Mapping[str, str],
) -> list[str]:
    tests = tests_by_claim.get(claim.id, [])
    checks = checks_by_claim.get(claim.id, [])
    lines = [f"### `{claim.id}`: {_md(claim.title)}", "", f"- **Status:** {claim.status}"]
    lines.append(f"- **Statement:** {_md(claim.statement)}")
    if claim.condition:
        lines.append(f"- **Condition:** {_md(claim.condition)}")
    if claim.reason:
        label = "Counterexample" if claim.status == "refuted" else "Reason"
        lines.append(f"- **{label}:** {_md(claim.reason)}")
    if claim.justification:
        lines.append(f"- **Justification:** {_md(claim.justification)}")
    if claim.origin != "notes":
        lines.append(f"- **Origin:** {claim.origin} (not stated in the notes)")
    if claim.sources:
        # A project claim's sources are the passages it is derived from, not places that state it.
        lines.append("- **Sources:**" if claim.origin == "notes" else "- **Derived from:**")
        for src in claim.sources:
            label = notes[src.note].label if src.note in notes else "?"
            lines.append(f"  - {label} `{src.note}`, {_md(src.heading)}")
    else:
        lines.append("- **Sources:** none (project claim)")
    lines.append(f"- **Components:** {', '.join(claim.components) if claim.components else 'none'}")
    if claim.conventions:
        lines.append(f"- **Conventions:** {', '.join(claim.conventions)}")
    if tests:
        lines.append("- **Tests:**")
        lines.extend(f"  - `{t}`" for t in tests)
    else:
        lines.append("- **Tests:** " + ("none yet" if claim.needs_test else "none (informal)"))
    if checks:
        lines.append("- **Checks:**")
        lines.extend(f"  - `{check_ids[t]}` (`{t}`)" for t in checks)
    else:
        lines.append("- **Checks:** none")
    for name in figures_by_claim().get(claim.id, []):
        lines.append(f"- **Figure:** [{_md(FIGURES[name][0])}](figures/{name})")
    lines.append("")
    return lines


def render(root: Path | None = None, claims_path: Path | str | None = None) -> str:
    """The SPEC.md text for the tree at ``root`` (default: this repository)."""
    claims = load_claims(claims_path)
    notes = load_notes(claims_path)
    links = collect(root)
    tested = links.tests_by_claim()
    areas = _areas(claims)
    lines = [
        "# Specification: the claims of the notes as contracts",
        "",
        "<!-- Generated by `python -m transformer_conformance.spec.render` from spec/claims.toml and the",
        "     claim references in tests/ and conformance/checks/. Do not edit by hand: run `make spec`. -->",
        "",
        "Each claim has a status: **holds** (a contract the reference implements and the tests prove),",
        "**refuted** (a statement of the notes that is false; the tests exhibit the counterexample),",
        "**conditional** (true only under the stated condition) or **informal** (no code can check it;",
        "the reason says why).",
        "",
        "## Summary",
        "",
        *_summary(areas, tested),
        "",
        "## Source notes",
        "",
        "| Label | File | Content |",
        "|---|---|---|",
        *(f"| {n.label} | `{n.file}` | {_md(n.title)} |" for n in notes.values()),
        "",
        "## Figures",
        "",
        "Drawn from the reference implementation by `make spec` (`spec/figures.py`).",
        "",
        *(
            f"- [{_md(caption)}](figures/{name}) ({', '.join(f'`{c}`' for c in claims)})\n\n"
            f"  ![{_md(caption)}](figures/{name})"
            for name, (caption, claims) in FIGURES.items()
        ),
        "",
    ]
    checks = links.checks_by_claim()
    check_ids = {c.target: c.check_id for c in links.checks}
    for area, area_claims in areas.items():
        if area in BEYOND_NOTES_AREAS:
            continue
        lines.extend([f"## {area}", ""])
        for claim in area_claims:
            lines.extend(_claim_section(claim, notes, tested, checks, check_ids))
    beyond = [area for area in areas if area in BEYOND_NOTES_AREAS]
    if beyond:
        lines.extend(
            [
                "# Beyond the notes: architecture variants",
                "",
                "The notes describe the 2017 architecture. The claims below (origin **project**) cover the",
                "variants real models use: rotary, ALiBi and relative positions, RMSNorm, gated FFNs,",
                "grouped-query attention, sliding windows, soft-capping, parallel blocks, and the",
                "Hugging Face equivalence tests (docs/ARCHITECTURE.md, \"Architecture variants\").",
                "",
            ]
        )
    for area in beyond:
        lines.extend([f"## {area} (beyond the notes)", ""])
        for claim in areas[area]:
            lines.extend(_claim_section(claim, notes, tested, checks, check_ids))
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    """Write SPEC.md to stdout as UTF-8, whatever the locale."""
    sys.stdout.buffer.write(render().encode("utf-8"))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
