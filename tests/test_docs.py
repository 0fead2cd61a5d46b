"""The README and docs/: links and their anchors resolve, no doc is orphaned, DECISIONS.md stays short, the first
screen shows a real report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
DECISIONS = DOCS / "DECISIONS.md"
EVIDENCE = DOCS / "EVIDENCE.md"
DECISIONS_MAX_LINES = 300  # decisions and their why; the measurements behind them live in EVIDENCE.md
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]*)\)")  # [text](target) and ![alt](target)
FENCE = re.compile(r"^\s*(```|~~~)")


def _prose(path: Path) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks."""
    prose, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            prose.append(line)
    return prose


def _links(path: Path) -> list[str]:
    """Markdown link and image targets outside code (fenced blocks and inline code)."""
    text = "\n".join(re.sub(r"`[^`]*`", "", line) for line in _prose(path))
    return [target for _, target in LINK.findall(text)]


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the file's headings: lower case, punctuation dropped, spaces as hyphens, a repeated
    heading numbered from -1."""
    anchors: set[str] = set()
    for line in _prose(path):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", LINK.sub(r"\1", heading.group(1)).lower()).replace(" ", "-")
            anchor, n = slug, 0
            while anchor in anchors:
                n += 1
                anchor = f"{slug}-{n}"
            anchors.add(anchor)
    return anchors


def _docs() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves_to_a_file_and_heading(doc: Path) -> None:
    broken = []
    for target in _links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # http(s), mailto: ...
        path, _, anchor = target.partition("#")
        file = doc.parent / path if path else doc
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{doc.name}: links to missing files or headings: {broken}"
    if doc == README:
        assert len(_links(doc)) >= 10  # the parser finds the links (a README linking nothing would pass trivially)


def test_anchors_follow_githubs_rule() -> None:
    # The rule the link test relies on, on headings of the kinds the docs use (code, colons, apostrophes, repeats).
    doc = DOCS / "DECISIONS.md"
    assert "where-things-live-one-owner-per-fact" in _anchors(doc)
    assert {"the-gap-stall-and-gap_relu", "seeds-on-demand-the-designs-measured"} <= _anchors(doc)
    assert "the-class-map-grids-settings" in _anchors(EVIDENCE)


def test_no_doc_is_orphaned() -> None:
    linked_from: dict[Path, set[str]] = {}
    for doc in _docs():
        for target in _links(doc):
            path = target.partition("#")[0]
            if path and not re.match(r"^[a-z][a-z0-9+.-]*:", path, re.IGNORECASE):
                linked_from.setdefault((doc.parent / path).resolve(), set()).add(doc.name)
    orphans = [doc.name for doc in sorted(DOCS.glob("*.md")) if not linked_from.get(doc.resolve(), set()) - {doc.name}]
    assert not orphans, f"linked from neither README.md nor another doc: {orphans}"


def test_decisions_stay_short_and_every_evidence_section_backs_a_decision() -> None:
    lines = DECISIONS.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= DECISIONS_MAX_LINES, (
        f"docs/DECISIONS.md has {len(lines)} lines (at most {DECISIONS_MAX_LINES}): keep each decision and its why "
        "there, and move its measurements to a section of docs/EVIDENCE.md that the decision links to"
    )
    cited = {target.partition("#")[2] for target in _links(DECISIONS) if target.startswith("EVIDENCE.md#")}
    sections = {a for a in _anchors(EVIDENCE) if a != "evidence"}  # the page title is no section
    assert len(sections) >= 5  # the headings are found (an EVIDENCE.md without sections would pass trivially)
    assert not sections - cited, f"EVIDENCE.md sections no decision links to: {sorted(sections - cited)}"


def test_the_first_screen_shows_the_answer() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 150
    first = "\n".join(lines[:40])
    assert "Network-in-Network" in first
    assert re.search(r"^make demo\b", first, re.MULTILINE) and re.search(r"^make test\b", first, re.MULTILINE)
    picture = re.search(r"!\[[^\]]*\]\((docs/img/[^)]+\.png)\)", first)
    assert picture, "the verdicts picture is within the README's first 40 lines"
    assert (REPO / picture.group(1)).read_bytes()[:8] == PNG_MAGIC
    block = re.search(r"<!-- verdicts-screenshot\b.*?-->(.*?)<!-- /verdicts-screenshot -->", first, re.DOTALL)
    assert block and picture.group(0) in block.group(1), "picture and caption sit between the markers"
    caption = block.group(1).replace(picture.group(0), "")
    assert re.search(r"\b(fp32|bf16|fp16)\b", caption) and re.search(r"commit [0-9a-f]{7}", caption)
    assert "chromium" in README.read_text() and "root" in README.read_text()  # make test's browser install


def _screenshot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reports.screenshot", *args], cwd=REPO, capture_output=True, text=True, timeout=180
    )


def test_screenshot_without_a_report_says_run_make_demo(tmp_path: Path) -> None:
    done = _screenshot(str(tmp_path / "runs" / "quick" / "report" / "report.html"), "--png", str(tmp_path / "v.png"))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "make demo" in lines[0] and str(tmp_path) in lines[0]
    assert not (tmp_path / "v.png").exists()


def test_screenshot_crops_to_the_verdicts_and_rewrites_the_caption(tmp_path: Path) -> None:
    from PIL import Image

    from reports import screenshot

    try:
        screenshot.find_chromium()
    except screenshot.ScreenshotError as error:
        pytest.skip(str(error))
    grid = tmp_path / "out" / "toy"
    (grid / "report").mkdir(parents=True)
    for run_id in ("a", "b"):
        (grid / "runs" / run_id).mkdir(parents=True)
        record = {"status": "ok" if run_id == "a" else "failed", "precision": "bf16", "device_name": "cpu"}
        record["finished"] = "2026-12-01T10:00:00+00:00"
        (grid / "runs" / run_id / "result.json").write_text(json.dumps(record))
    (grid / "report" / "report.html").write_text(
        "<!DOCTYPE html><html><head><style>body { margin: 2em; } .blue { background: #0000ff; }</style></head><body>"
        "<h1>report: toy</h1><p style='background:#ff0000;height:300px'>before</p>"
        "<h2>Verdicts</h2><table><tr><td class='blue'>GAP has fewer parameters than the FC head</td></tr></table>"
        "<h2>Class maps</h2><div style='background:#ff0000;height:2000px'>after</div></body></html>"
    )
    readme = tmp_path / "README.md"
    readme.write_text("# top\n<!-- verdicts-screenshot: marker -->\nold picture\n<!-- /verdicts-screenshot -->\nend\n")
    png = tmp_path / "docs" / "img" / "verdicts.png"
    done = _screenshot(str(grid / "report" / "report.html"), "--png", str(png), "--readme", str(readme))
    assert done.returncode == 0, done.stderr
    pixels = Image.open(png).convert("RGB")
    colours = {colour for _, colour in pixels.getcolors(maxcolors=1 << 20)}
    assert any(b > 200 and r < 60 and g < 60 for r, g, b in colours), "the verdicts table was drawn"
    assert not any(r > 200 and g < 60 and b < 60 for r, g, b in colours), "nothing outside the verdicts section"
    assert pixels.height < 600
    text = readme.read_text()
    assert text.startswith("# top\n<!-- verdicts-screenshot: marker -->\n") and text.endswith(
        "<!-- /verdicts-screenshot -->\nend\n"
    )
    assert "old picture" not in text and "(docs/img/verdicts.png)" in text
    assert "`toy` grid" in text and "1 of 2 runs ok on 2026-12-01" in text and ", bf16, commit " in text
    # Run again: the caption is replaced, not added.
    assert _screenshot(str(grid / "report" / "report.html"), "--png", str(png), "--readme", str(readme)).returncode == 0
    assert readme.read_text() == text


def test_cpu_name_reads_cpuinfo(tmp_path: Path) -> None:
    from reports.screenshot import cpu_name

    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC  9R14\n"
        "flags\t\t: fpu avx avx2 fma avx512f avx512_bf16\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 9R14\n"
    )
    name = cpu_name(info)
    assert name.startswith("AMD EPYC 9R14 (family 25, model 17; AVX-512, AVX512-BF16, no AMX)")


def test_screenshot_script_imports_no_torch() -> None:
    code = "import sys, reports.screenshot; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
