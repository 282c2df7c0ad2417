"""The HTML report in a real headless Chromium (Chrome DevTools protocol over a pipe, stdlib only).

The page must load without console errors or uncaught exceptions, decode every picture, and its
filters must hide matrix rows (status filter) and columns and cards (target filter). A screenshot
is kept under reports/ (a CI artefact). Skipped with a reason where no Chromium is installed
(.ci/run installs Debian's chromium when apt is available).
"""

import json
import time
from pathlib import Path

import pytest

from transformer_conformance import figures
from transformer_conformance.html import write_html

from .browser import Browser, find_chromium
from .html_run import mixed_report

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = find_chromium()

pytestmark = [
    pytest.mark.xdist_group("html-report"),
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium on PATH (apt-get install chromium, as .ci/run does; or set $CHROMIUM)",
    ),
]

VISIBLE_ROWS = "document.querySelectorAll('#matrix tr.claim-row:not(.hidden-by-filter)').length"


def _shown(selector: str) -> str:
    """JS: how many elements matching ``selector`` are displayed."""
    return (
        f"Array.prototype.filter.call(document.querySelectorAll({json.dumps(selector)}),"
        " function (e) { return getComputedStyle(e).display !== 'none'; }).length"
    )


def _click(selector: str) -> str:
    return f"document.querySelector({json.dumps(selector)}).click()"


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    report = mixed_report(str(tmp_path_factory.getbasetemp() / "html-deviations"))
    path = tmp_path_factory.mktemp("html") / "report.html"
    write_html(report, path)
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as browser:
        browser.open(path.as_uri())
        yield browser, report


def test_page_renders_without_console_errors(browser_page):
    browser, report = browser_page
    assert browser.evaluate("document.readyState") == "complete"
    assert browser.console_errors() == []
    claims, _, _ = report.matrix()
    assert browser.evaluate(VISIBLE_ROWS) == len(claims)
    assert (
        browser.evaluate("document.getElementById('filter-count').textContent")
        == f"{len(claims)} claim rows shown"
    )
    if figures.available():
        images = browser.evaluate("document.images.length")
        assert images > 0
        broken = browser.evaluate(
            "Array.prototype.filter.call(document.images,"
            " function (i) { return !(i.naturalWidth > 0); }).length"
        )
        assert broken == 0
    reports = ROOT / "reports"
    browser.screenshot(reports / "html-report.png", max_height=4000)
    browser.screenshot(reports / "html-report-failure.png", "article.failure img")
    assert (reports / "html-report.png").stat().st_size > 10_000


def test_status_filter_hides_rows_without_a_matching_cell(browser_page):
    browser, report = browser_page
    claims, _, cells = report.matrix()
    for status in ("pass", "error", "known-deviation", "blocked", "not-applicable"):
        browser.evaluate(_click(f'input[name="status"][value="{status}"]'))
    failing = {claim for (claim, _), status in cells.items() if status == "fail"}
    assert 0 < len(failing) < len(claims)
    assert browser.evaluate(VISIBLE_ROWS) == len(failing)
    shown = browser.evaluate(
        "Array.prototype.map.call(document.querySelectorAll('#matrix tr.claim-row:not(.hidden-by-filter)'),"
        " function (r) { return r.dataset.claim; })"
    )
    assert set(shown) == failing
    # inside the rows left, only FAIL cells stay bright
    bright = browser.evaluate(
        "Array.prototype.map.call(document.querySelectorAll('#matrix td.cell:not(.dim)'),"
        " function (c) { return c.dataset.status; })"
    )
    assert set(bright) == {"fail"}
    assert browser.evaluate(_shown("article.card.s-known-deviation")) == 0
    assert browser.evaluate(_shown("article.failure")) == len(
        [r for r in report.failures if r.status == "fail"]
    )
    for status in ("pass", "error", "known-deviation", "blocked", "not-applicable"):
        browser.evaluate(_click(f'input[name="status"][value="{status}"]'))
    assert browser.evaluate(VISIBLE_ROWS) == len(claims)


def test_target_filter_hides_columns_and_cards(browser_page):
    browser, report = browser_page
    claims, targets, _ = report.matrix()
    keep = "mutant.kv-cache-offset"
    browser.evaluate(_click('button[data-targets="none"]'))
    assert browser.evaluate(VISIBLE_ROWS) == 0
    browser.evaluate(_click(f'input[name="target"][value="{keep}"]'))
    assert browser.evaluate(_shown("#matrix thead th.target")) == 1
    assert browser.evaluate(_shown("#matrix td.cell")) == browser.evaluate(VISIBLE_ROWS)
    assert browser.evaluate(_shown(f'#matrix td.cell[data-target="{keep}"]')) == browser.evaluate(
        VISIBLE_ROWS
    )
    mine = [r for r in report.failures if r.target == keep]
    assert browser.evaluate(_shown("article.failure")) == len(mine) > 0
    assert browser.evaluate(_shown("article.target")) == 1
    browser.evaluate(_click('button[data-targets="all"]'))
    assert browser.evaluate(_shown("#matrix thead th.target")) == len(targets)
    assert browser.evaluate(VISIBLE_ROWS) == len(claims)


def test_copy_button_acknowledges(browser_page):
    browser, _ = browser_page
    browser.evaluate(_click("button.copy"))
    label = ""
    for _ in range(50):  # the clipboard answers asynchronously
        label = browser.evaluate("document.querySelector('button.copy').textContent")
        if label == "copied":
            break
        time.sleep(0.02)
    assert label == "copied"
    assert browser.console_errors() == []
