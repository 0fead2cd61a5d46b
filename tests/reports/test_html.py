"""reports/html.py: the page leads with the verdicts, lists every run, renders hostile text inert and links only to
files beside it.

Covered elsewhere, not repeated here: the paper grid's page content and self-containment (tests/reports/test_reports.py,
test_page_is_self_contained_and_states_what_it_did), its summary table (test_page_summary_is_readable_and_links_the_
full_csv) and a render in headless Chromium (test_page_renders_in_headless_chromium).
"""

from __future__ import annotations

import base64
import html
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from reports import write_report
from tests.reports_fixtures import result, write_grid, write_run

HOSTILE = "<script>alert(1)</script>"
# A directory name cannot hold "/": the closing tag is left out there.
HOSTILE_DIR = "<script>alert(2)"


class Page(HTMLParser):
    """The parts of the page these tests read: headings in order, links and image sources, table rows."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.urls: list[str] = []
        self.tags: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        self._in_h2 = tag == "h2"
        if self._in_h2:
            self.headings.append("")
        self.urls += [value for name, value in attrs if name in ("href", "src")]

    def handle_endtag(self, tag: str) -> None:
        self._in_h2 = self._in_h2 and tag != "h2"

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings[-1] += data


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    runs = [result(0.80 + 0.01 * s + (0.02 if head == "gap" else 0), 0.85 + 0.01 * s, head=head, seed=s)
            for head in ("gap", "fc") for s in range(3)]  # fmt: skip
    runs.append(result(0.1, 0.1, status="failed", head="fc", seed=3))
    runs[-1]["error"] = f"RuntimeError: {HOSTILE}"
    expected = [r["variant_id"] for r in runs] + [HOSTILE_DIR]
    grid = write_grid(tmp_path_factory.mktemp("out"), "page", runs, expected=expected, axes={"head": ["gap", "fc"]},
                      description=f"a grid described as {HOSTILE}")  # fmt: skip
    # A run whose result.json is torn: it becomes a note ("skipped while reading") and an unreadable run.
    broken = write_run(grid, {**runs[0], "variant_id": HOSTILE_DIR})
    (broken / "result.json").write_text('{"status": "ok", "test_acc"')
    return write_report(grid)


@pytest.fixture(scope="module")
def page(report) -> str:
    return report.html.read_text(encoding="utf-8")


def _section(page: str, heading: str) -> str:
    return page.split(f"<h2>{heading}</h2>")[1].split("<h2>")[0]


def test_the_page_opens_with_the_verdicts(report, page: str) -> None:
    parser = Page()
    parser.feed(page)
    assert parser.headings[0] == "Verdicts"
    # Before it: only the title, the grid's description and the done line (no table, no figure).
    before = page.split("<h2>Verdicts</h2>")[0]
    assert "<table" not in before and "<figure" not in before and "<img" not in before
    # 8 listed, each with a result.json (a torn one counts as done, as unreadable): 3 seeds x 2 heads ok, 1 failed.
    assert "<strong>8 of 8 variants done: 1 failed, 6 ok, 1 unreadable</strong>" in before
    claims = pd.read_csv(report.tables["verdicts"])
    verdicts = _section(page, "Verdicts")
    table = verdicts.split("<table class='verdicts'>")[1].split("</table>")[0]
    assert table.count("<tr>") == len(claims) + 1  # a header, then one row per claim in verdicts.csv
    for claim, word in zip(claims["claim"], claims["verdict"]):
        cells = re.escape(html.escape(claim)) + "</td><td class='word-cell'><span class='word [a-z]+'>"
        assert re.search(cells + re.escape(html.escape(word)) + "<", table), claim


def test_every_run_appears_in_the_runs_table(report, page: str) -> None:
    runs = pd.read_csv(report.tables["results"])
    assert len(runs) == 8  # 6 ok, 1 failed, 1 unreadable
    table = _section(page, "All runs")
    rows = table.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert len(rows) == len(runs)
    first_cells = [row.split("<td>")[1].split("</td>")[0] for row in rows]
    escaped = {HOSTILE_DIR: "&lt;script&gt;alert(2)"}
    assert sorted(first_cells) == sorted(escaped.get(v, v) for v in runs["variant_id"])


def test_hostile_text_is_rendered_inert(page: str) -> None:
    parser = Page()
    parser.feed(page)
    assert "script" not in parser.tags  # no element, however it got there
    assert "<script" not in page.lower()
    assert f"a grid described as {HOSTILE}".replace("<", "&lt;").replace(">", "&gt;") in page
    failed = _section(page, "Runs that did not finish ok")
    assert "RuntimeError: &lt;script&gt;alert(1)&lt;/script&gt;" in failed
    assert "&lt;script&gt;alert(2)" in failed  # the unreadable run, by its directory name
    notes = _section(page, "Skipped while reading")
    assert "&lt;script&gt;alert(2)/result.json: unreadable result" in notes


def test_links_are_relative_and_resolve_beside_the_page(report, page: str) -> None:
    parser = Page()
    parser.feed(page)
    links = [url for url in parser.urls if not url.startswith("data:")]
    assert links  # the CSV and ablation-table links
    for url in links:
        assert "://" not in url and not url.startswith("/"), url
        assert (report.html.parent / url).is_file(), url
    # Each figure's image is the PNG its caption names, relative to the page: plots/<name>.png.
    figures = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,([^']+)'>.*?\((plots/[^)]+)\)", page)
    assert {name for name, _, _ in figures} == set(report.plots)
    for name, data, relative in figures:
        path = report.html.parent / relative
        assert path == report.plots[name]
        assert base64.b64decode(data) == path.read_bytes()


def test_a_page_moved_with_its_folder_keeps_its_links(report, page: str, tmp_path: Path) -> None:
    # Relative links survive copying the report folder elsewhere (a web server, an archive).
    import shutil

    moved = tmp_path / "published"
    shutil.copytree(report.html.parent, moved)
    parser = Page()
    parser.feed((moved / "report.html").read_text(encoding="utf-8"))
    for url in (u for u in parser.urls if not u.startswith("data:")):
        assert (moved / url).is_file(), url
