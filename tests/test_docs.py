"""The README and docs/: links resolve, nothing the README said is lost, the first screen shows a real report."""

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
# The README as of commit 9462d26, before its reference sections moved into docs/ (one file per topic).
OLD_README = Path(__file__).parent / "fixtures" / "README_9462d26.md"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Lines of the old README rewritten on purpose when they moved, with their new wording (as rendered: links by their
# text). Cross-references that said "below" now name the file the section moved to.
REWRITTEN = {
    "`--executor local|ray`, `--ray-address HEAD:PORT` (below), `--data-dir DIR`, `--download`, "
    "`--set KEY=VALUE` (below),": "`--executor local|ray`, `--ray-address HEAD:PORT` (docs/RAY.md), `--data-dir DIR`, "
    "`--download`, `--set KEY=VALUE` (docs/GRIDS.md),",
    "`--epochs N` (short for `--set epochs=N`), `--wandb offline|online|disabled`, `--cpu-threads N`, "
    "`--no-progress`,": "`--epochs N` (short for `--set epochs=N`), `--wandb offline|online|disabled` (docs/WANDB.md), "
    "`--cpu-threads N`, `--no-progress`,",
    "OUT/<grid>/wandb/ W&B offline runs (see below)": "OUT/<grid>/wandb/ W&B offline runs (docs/WANDB.md)",
    '(see "Class maps" below) it also holds `loc_pointing`, `loc_pointing_chance`, `loc_energy` (each in [0, 1]),':
    "(see docs/CLASS_MAPS.md) it also holds `loc_pointing`, `loc_pointing_chance`, `loc_energy` (each in [0, 1]),",
    "(docs/BENCHMARKS.md). `make test` also installs Debian's chromium, pdflatex and pdftoppm when run as root, "
    "for the": "(docs/BENCHMARKS.md, which opens with every CPU's current figures). `make test` also installs Debian's "
    "chromium, pdflatex and pdftoppm when run as root, for the",
    "tests/ pytest bench/ throughput benchmarks docs/ BENCHMARKS.md, DECISIONS.md":
    "tests/ pytest bench/ throughput benchmarks docs/ one file per topic (above)",
    "clone on a 2-core AMD EPYC (fp32, no native bf16), `make test` took 8.5 minutes (install included) and `make "
    "demo`": "clone on a 2-core AMD EPYC (fp32, no native bf16) on 2026-12-01, `make test` took 12.4–14.0 minutes "
    "(install included)",
    "6.9 minutes after it: 70 runs (14 variants × 5 seeds) on one single-threaded worker per core, then the report":
    "and `make demo` 10.0 minutes after it: 70 runs (14 variants × 5 seeds) on one single-threaded worker per core, "
    "then the report",
    # The verdict rule of "Verdicts a statistician would sign": seed-level, family-adjusted, rule and margin per claim.
    "numbers as d2l prints them (`running_train_acc`, `running_train_loss`), best_test_acc, train_seconds, "
    "images_per_s,": "best_test_acc (its epoch picked on the test set: never a basis for comparison; results.csv "
    "names it `best_test_acc_picked_on_test`)",
    "runs measure `loc_pointing`), each with its number, 95% CI, pairs and one word: *supported* (the paired "
    "difference's": "runs measure `loc_pointing`), each with its rule, margin, number, family-adjusted interval and "
    "seeds, and one word:",
    "interval excludes zero in the claimed direction), *contradicted* (it excludes zero the other way), "
    "*inconclusive*": "*Superiority* claims (\"raises\", \"reduces\", \"localises better\") are supported when the "
    "interval lies on the claimed side of zero, contradicted when it lies on the other side,",
    "(with the number of seeds that would resolve the observed mean at the observed spread) or *not tested by this "
    "grid*.": "*inconclusive* (with the number of seeds that would resolve it at the observed seed-level spread) or "
    "*not tested by this grid*.",
    "every run. Files: `verdicts.csv`, `summary.csv` (every column: mean, sd, n, 95% t-interval of test accuracy and "
    "the": "every run. Files: `verdicts.csv` (per claim: verdict, rule, margin, the plain 95% and the adjusted "
    "interval,",
    "gaps), `effects.csv` (per axis and pair of levels: the paired difference over runs equal in every other setting "
    "and": "`effects.csv` (per axis and pair of levels: the seed-level difference over runs equal in every other "
    "setting and the seed, its unadjusted 95% t-interval,",
    "the seed, its 95% t-interval, pairs, seeds and runs left out), `results.csv` (every run), `plots/*.png`, and "
    "the": "`results.csv` (every run; `best_test_acc` appears as `best_test_acc_picked_on_test`",
    "`nin-ablate report OUT/<grid> --format md` (or `tex`) prints that table to stdout and writes nothing.":
    "`nin-ablate report OUT/<grid> --format md` (or `tex`) prints that table, with the verdict sentences under it, to "
    "stdout and writes nothing.",
    "and the verdict words; `reports.ablation_table(grid_dir, \"md\")` returns the table.": "and the verdict words; "
    "`reports.ablation_table(grid_dir, \"md\")` returns the table and the verdicts under it.",
}  # fmt: skip

LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]*)\)")  # [text](target) and ![alt](target)
FENCE = re.compile(r"^\s*(```|~~~)")


def _normalise(line: str) -> str:
    """A line as a reader sees it: heading marks off, links by their text, whitespace runs collapsed."""
    line = re.sub(r"^\s*#{1,6}\s+", "", line)
    return " ".join(LINK.sub(r"\1", line).split())


def _rendered(path: Path) -> str:
    """The whole file normalised line by line and joined, so that a paragraph may be wrapped anew."""
    return " ".join(_normalise(line) for line in path.read_text(encoding="utf-8").splitlines())


def _new_texts() -> dict[str, str]:
    return {path.name: _rendered(path) for path in [README, *sorted(DOCS.glob("*.md"))]}


def _links(path: Path) -> list[str]:
    """Markdown link and image targets outside code (fenced blocks and inline code)."""
    prose, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            prose.append(re.sub(r"`[^`]*`", "", line))
    return [target for _, target in LINK.findall("\n".join(prose))]


@pytest.mark.parametrize(
    "doc", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: str(p.relative_to(REPO))
)  # fmt: skip
def test_every_relative_link_resolves_to_a_file(doc: Path) -> None:
    broken = []
    for target in _links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue  # http(s), mailto: ... and anchors within the page
        path = target.split("#", 1)[0]
        if not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.name}: links to missing files: {broken}"
    if doc == README:
        assert len(_links(doc)) >= 10  # the parser finds the links (a README linking nothing would pass trivially)


def test_nothing_of_the_old_readme_is_lost() -> None:
    old = [line for line in OLD_README.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(old) > 250, "the fixture is the whole README of 9462d26"
    texts = _new_texts()
    missing = []
    for line in old:
        if re.fullmatch(r"\s*(```|~~~)[\w-]*\s*", line):
            continue  # a bare code-fence marker carries no words; the lines between them are checked
        wording = _normalise(line)
        wanted = REWRITTEN.get(wording, wording)
        if not any(wanted in text for text in texts.values()):
            missing.append(line if wording not in REWRITTEN else f"{line}  (rewritten as: {wanted})")
    assert not missing, "lines of the old README found in neither README.md nor docs/*.md:\n" + "\n".join(missing)


def test_rewritten_lines_are_real_and_really_rewritten() -> None:
    old = {_normalise(line) for line in OLD_README.read_text(encoding="utf-8").splitlines()}
    texts = _new_texts()
    for before, after in REWRITTEN.items():
        assert before in old, f"not a line of the old README: {before}"
        assert not any(before in text for text in texts.values()), f"kept as it was, need not be listed: {before}"
        assert before != after


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
