"""The HTML report's structure (parsed with the stdlib html.parser) and the evidence behind its pictures.

The audit (tests/conformance/html_run.py) has passes, failures, a known deviation, blocked and
not-applicable results; every failure that records numbers must have its picture, every matrix cell
its link to an existing anchor, and nothing may point outside the file.
"""

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from transformer_conformance import evidence, figures
from transformer_conformance.context import CheckFailure, FailureKind
from transformer_conformance.html import FIGURES_NOTE, render_html, write_html
from transformer_conformance.runner import STATUSES

from .html_run import mixed_report

pytestmark = pytest.mark.xdist_group("html-report")

needs_matplotlib = pytest.mark.skipif(
    not figures.available(), reason="matplotlib (the html extra) is missing"
)


class Page(HTMLParser):
    """Every element as (tag, attrs, path of enclosing element indices)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], tuple[int, ...]]] = []
        self.stack: list[int] = []
        self.text_of: dict[int, list[str]] = {}

    VOID = frozenset({"img", "input", "meta", "br", "hr", "link"})

    def handle_starttag(self, tag, attrs):
        index = len(self.elements)
        self.elements.append((tag, {k: v or "" for k, v in attrs}, tuple(self.stack)))
        if tag not in self.VOID:
            self.stack.append(index)

    def handle_endtag(self, tag):
        while self.stack:
            if self.elements[self.stack.pop()][0] == tag:
                break

    def handle_data(self, data):
        for index in self.stack:
            self.text_of.setdefault(index, []).append(data)

    # -- queries ---------------------------------------------------------------------------
    def find(self, tag=None, **attrs):
        """Indices of elements with ``tag`` whose attributes contain ``attrs`` (class: one of the words)."""
        out = []
        for i, (t, a, _) in enumerate(self.elements):
            if tag is not None and t != tag:
                continue
            ok = True
            for key, want in attrs.items():
                key = key.rstrip("_")
                have = a.get(key)
                if (
                    have is None
                    or (key == "class" and want not in have.split())
                    or (key != "class" and have != want)
                ):
                    ok = False
                    break
            if ok:
                out.append(i)
        return out

    def inside(self, index, tag=None, **attrs):
        """Descendants of element ``index`` matching ``tag``/``attrs``."""
        return [i for i in self.find(tag, **attrs) if index in self.elements[i][2]]

    def attr(self, index, name):
        return self.elements[index][1].get(name, "")

    def text(self, index):
        return "".join(self.text_of.get(index, []))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return mixed_report(str(tmp_path_factory.getbasetemp() / "html-deviations"))


@pytest.fixture(scope="module")
def page(report):
    parsed = Page()
    parsed.feed(render_html(report))
    return parsed


def test_the_run_has_every_status(report):
    statuses = {r.status for r in report.results}
    assert {"pass", "fail", "known-deviation", "blocked", "not-applicable"} <= statuses


def test_matrix_cells_link_to_existing_anchors(page, report):
    ids = {page.attr(i, "id") for i in page.find() if page.attr(i, "id")}
    claims, targets, cells = report.matrix()
    tds = page.find("td", class_="cell")
    assert len(tds) == len(claims) * len(targets)
    linked = 0
    for td in tds:
        status = page.attr(td, "data-status")
        links = page.inside(td, "a")
        if status == "none":  # no check of this claim ran on this target
            assert not links
            continue
        assert len(links) == 1, f"cell {page.attr(td, 'title')} has no link"
        href = page.attr(links[0], "href")
        assert href.startswith("#") and href[1:] in ids, href
        linked += 1
    assert linked == len(cells)
    # every in-page link resolves
    for i in page.find("a"):
        href = page.attr(i, "href")
        if href.startswith("#"):
            assert href[1:] in ids, f"dangling link {href}"


def test_matrix_is_grouped_by_area_and_cells_carry_their_status(page, report):
    claims, _, cells = report.matrix()
    rows = page.find("tr", class_="claim-row")
    assert sorted(page.attr(r, "data-claim") for r in rows) == claims
    row_areas = [page.attr(r, "data-area") for r in rows]
    blocks = [a for i, a in enumerate(row_areas) if i == 0 or a != row_areas[i - 1]]
    assert len(blocks) == len(set(blocks)), "the rows of an area must stand together"
    areas = [page.attr(i, "data-area") for i in page.find("tr", class_="area")]
    assert len(areas) == len(set(areas)) and set(areas) >= {c.split(".")[0] for c in claims}
    for td in page.find("td", class_="cell"):
        claim = page.attr(page.elements[td][2][-1], "data-claim")
        assert page.attr(td, "data-status") == (cells.get((claim, page.attr(td, "data-target"))) or "none")


def test_filter_controls_exist(page, report):
    statuses = {page.attr(i, "value") for i in page.find("input", name="status")}
    assert statuses == set(STATUSES)
    targets = {page.attr(i, "value") for i in page.find("input", name="target")}
    assert targets == {t.name for t in report.targets}
    assert page.find("button", **{"data-targets": "all"}) and page.find("button", **{"data-targets": "none"})


def test_nothing_points_outside_the_file(page):
    for tag, attrs, _ in page.elements:
        for key in ("src", "href"):
            value = attrs.get(key)
            if value is None:
                continue
            assert value.startswith(("#", "data:image/png;base64,")), f"<{tag} {key}={value[:60]!r}>"
        assert not (tag == "link" and attrs.get("rel") == "stylesheet")
        assert not (tag == "script" and "src" in attrs)


@needs_matplotlib
def test_every_failure_has_its_picture_counterexample_and_repro(page, report):
    cards = {page.attr(i, "id"): i for i in page.find("article", class_="failure")}
    assert len(cards) == len(report.failures)
    drawn_kinds = set()
    for r in report.failures:
        card = cards[f"f--{r.target}--{r.check}"]
        images = page.inside(card, "img")
        numbers = bool(r.evidence) or (r.measured is not None and r.allowed is not None)
        if numbers:
            assert images, f"{r.target} :: {r.check} has evidence but no picture"
            assert all(page.attr(i, "src").startswith("data:image/png;base64,") for i in images)
        else:  # a shape failure or a raise: nothing numeric to draw, and the card says so
            assert page.inside(card, "p", class_="no-figure")
        for kind in r.evidence or {}:
            caption = figures.DRAWERS[kind][0]
            assert caption in [page.attr(i, "alt") for i in images], (r.check, kind)
            drawn_kinds.add(kind)
        assert "inputs" in "".join(page.text(i) for i in page.inside(card, "pre"))
        copy = page.inside(card, "button", class_="copy")
        assert copy and page.attr(copy[0], "data-copy") == r.repro
    assert drawn_kinds == set(figures.DRAWERS), "the run must exercise every kind of picture"


def test_targets_show_capabilities_conventions_time_and_deviations(page, report):
    for t in report.targets:
        (card,) = page.find("article", id=f"target--{t.name}")
        text = page.text(card)
        assert "in the target" in text and "in the harness" in text
        for cap in t.capabilities:
            assert cap in text
        for key in t.conventions:
            assert key in text
    (nan_card,) = page.find("article", id="target--fake-nan")
    assert "dummy.attention" in page.text(nan_card)  # the deviation applied


def test_claim_cards_show_statement_status_and_citation(page, report):
    from transformer_conformance.spec import load_claims

    spec = load_claims()
    claims, _, _ = report.matrix()
    for cid in claims:
        (card,) = page.find("div", id=f"claim--{cid}")
        text = " ".join(page.text(card).split())
        assert f"spec status: {spec[cid].status}" in text
        assert " ".join(spec[cid].statement.split()) in text
        assert "Source:" in text


def test_page_without_matplotlib_keeps_the_tables_and_says_why(report, monkeypatch, tmp_path):
    monkeypatch.setattr(figures, "available", lambda: False)
    path = tmp_path / "report.html"
    write_html(report, path)
    parsed = Page()
    parsed.feed(path.read_text(encoding="utf-8"))
    assert not parsed.find("img")
    assert parsed.find("table", id="matrix") and parsed.find("article", class_="failure")
    assert FIGURES_NOTE in parsed.text(parsed.find("p", id="figures-note")[0])


def test_evidence_is_small_and_in_the_json_report(report, tmp_path):
    path = tmp_path / "report.json"
    report.write_json(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    with_evidence = [r for r in data["results"] if r.get("evidence")]
    assert with_evidence
    for r in with_evidence:
        size = len(json.dumps(r["evidence"]))
        assert size < 40_000, f"{r['target']} :: {r['check']}: evidence of {size} characters"
    leak = next(r for r in with_evidence if r["check"] == "mask.masked-weights-zero")["evidence"]["attention"]
    assert len(leak["visible"]) == len(leak["target"]) and len(leak["visible"][0]) == len(leak["target"][0])
    # the picture's point: the target puts weight where the mask hides the key
    assert any(w and not seen for wr, vr in zip(leak["target"], leak["visible"]) for w, seen in zip(wr, vr))
    steps = next(r for r in with_evidence if "steps" in r["evidence"])["evidence"]["steps"]
    assert len(steps["labels"]) == len(steps["measured"]) == len(steps["allowed"]) > 2
    assert any(m is not None and a is not None and m > a for m, a in zip(steps["measured"], steps["allowed"]))


# -- evidence helpers ----------------------------------------------------------------------------
def test_error_sample_is_capped_and_keeps_the_worst_entry():
    expected = torch.zeros(50, 50, dtype=torch.float64)
    actual = torch.zeros(50, 50)
    actual[17, 3] = 5.0
    payload = evidence.error_sample(actual, expected, None, "direct")["errors"]
    assert len(payload["abs_error"]) <= evidence.MAX_SAMPLE and payload["count"] == 2500
    assert max(payload["abs_error"]) == 5.0 and payload["exceeding"] == 1
    assert len(payload["bound"]) == len(payload["abs_error"])


def test_attached_builds_evidence_only_for_a_failure_and_never_hides_it():
    built = []

    def build():
        built.append(1)
        return {"steps": {"labels": []}}

    with evidence.attached(build):
        pass
    assert built == []
    with pytest.raises(CheckFailure) as info, evidence.attached(build, lambda: 1 / 0):
        raise CheckFailure(FailureKind.NUMERIC, "boom", evidence={"errors": {"x": 1}})
    assert info.value.evidence == {"errors": {"x": 1}, "steps": {"labels": []}}


def test_run_steps_records_every_step_after_the_first_failure():
    def pairs():
        for t in range(4):
            actual = torch.full((2,), 1.0 if t in (1, 3) else 0.0)
            yield str(t), f"step {t}", actual, torch.zeros(2, dtype=torch.float64), None

    def judge(what, actual, expected, keep):
        if float(actual.max()) > 0:
            raise CheckFailure(FailureKind.NUMERIC, what)

    with pytest.raises(CheckFailure) as info:
        evidence.run_steps(evidence.StepErrors("cache"), pairs(), judge)
    assert info.value.message == "step 1"  # the first failure, as without evidence
    assert info.value.evidence["steps"]["labels"] == ["0", "1", "2", "3"]


def test_write_html_creates_the_parent_directory(report, tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "available", lambda: False)
    path = tmp_path / "deep" / "er" / "report.html"
    write_html(report, path)
    assert Path(path).read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
