"""The README's picture: the verdicts section of a real report.html, drawn by headless chromium, and its caption.

    python -m reports.screenshot [REPORT_HTML] [--png docs/img/verdicts.png] [--readme README.md]
    make screenshot [REPORT=runs/quick/report/report.html]

The page is cut down to its verdicts section (the `<h2>Verdicts</h2>` heading up to the next `<h2>`, with the page's
own style), rendered by chromium as the report tests render the whole page, and the PNG cropped to what was drawn.
The caption names the CPU (this machine's /proc/cpuinfo: run it where the grid ran) or the GPU the runs recorded,
the precision the runs recorded, and the commit (a `commit` the runs recorded, else the checkout that holds the
report, else this one). It is written into the README between the `verdicts-screenshot` marker comments, so
re-running this after a new `make demo` keeps picture and caption in step.

Stdlib and Pillow only: like the rest of reports/, this never imports torch.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_REPORT = Path("runs/quick/report/report.html")
DEFAULT_PNG = Path("docs/img/verdicts.png")
DEFAULT_README = Path("README.md")
BEGIN = re.compile(r"<!-- verdicts-screenshot\b[^>]*-->")
END = "<!-- /verdicts-screenshot -->"
# The flags tests/reports/test_reports.py renders report.html with; the page is 1200 px wide at most.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--hide-scrollbars", "--window-size=1280,3000",
)  # fmt: skip
SCALE = 2  # device pixels per CSS pixel: text stays sharp when the README shows the picture shrunk
PAD = 12  # CSS pixels of white kept around what was drawn


class ScreenshotError(Exception):
    """One line for the user; the command exits 1."""


def verdicts_page(page: str, base: Path) -> str:
    """The report page cut down to its head (style) and its verdicts section; relative links resolve against base."""
    start = re.search(r"<h2[^>]*>\s*Verdicts\s*</h2>", page, re.IGNORECASE)
    if start is None:
        raise ScreenshotError("has no <h2>Verdicts</h2> section")
    stop = re.compile(r"<h2[\s>]|</body>", re.IGNORECASE).search(page, start.end())
    head = re.search(r"<head[^>]*>.*?</head>", page, re.IGNORECASE | re.DOTALL)
    base_tag = f"<base href='{html.escape(base.resolve().as_uri())}/'>"
    style = head.group(0).replace("</head>", base_tag + "</head>", 1) if head else f"<head>{base_tag}</head>"
    section = page[start.start() : stop.start() if stop else len(page)]
    return f"<!DOCTYPE html><html lang='en'>{style}<body>{section}</body></html>"


def find_chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise ScreenshotError("no chromium binary: apt-get install -y chromium (make test installs it as root)")
    return binary


def render(page: str, png: Path) -> None:
    """Draw page with headless chromium and save the drawn part, cropped, as png."""
    from PIL import Image, ImageChops

    binary = find_chromium()
    with tempfile.TemporaryDirectory(prefix="nin-ablate-shot-") as tmp:
        source, shot = Path(tmp) / "verdicts.html", Path(tmp) / "shot.png"
        source.write_text(page, encoding="utf-8")
        done = subprocess.run(
            [binary, *CHROMIUM_FLAGS, f"--force-device-scale-factor={SCALE}", f"--screenshot={shot}",
             source.as_uri()],
            capture_output=True, text=True, timeout=120, env={"HOME": tmp, "PATH": os.environ.get("PATH", "")},
        )  # fmt: skip
        if done.returncode != 0 or not shot.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ScreenshotError(f"chromium failed (exit {done.returncode}): {last}")
        image = Image.open(shot).convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()
    if box is None:
        raise ScreenshotError("chromium drew a blank page")
    pad = PAD * SCALE
    left, top, right, bottom = box
    crop = (max(left - pad, 0), max(top - pad, 0), min(right + pad, image.width), min(bottom + pad, image.height))
    png.parent.mkdir(parents=True, exist_ok=True)
    # A page of text and flat colours: 256 colours keep it sharp at a third of the size.
    image.crop(crop).quantize(256).save(png, optimize=True)


def results_of(report: Path) -> list[dict]:
    """The result.json records of the grid whose report this is (OUT/<grid>/report/report.html)."""
    records = []
    for path in sorted((report.parent.parent / "runs").glob("*/result.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """e.g. "AMD EPYC (family 25, model 1; AVX2, no AVX512-BF16, no AMX), 2 cores"."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        import platform

        return platform.processor() or platform.machine() or "unknown CPU"
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    name = re.sub(r"\s+", " ", fields.get("model name", "unknown CPU"))
    isa = ["AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2")]
    isa.append("AVX512-BF16" if "avx512_bf16" in flags else "no AVX512-BF16")
    isa.append("AMX" if "amx_bf16" in flags else "no AMX")
    family = f"family {fields['cpu family']}, model {fields['model']}; " if "cpu family" in fields else ""
    cores = os.cpu_count() or 1
    return f"{name} ({family}{', '.join(isa)}), {cores} core{'s' if cores != 1 else ''}"


def commit_of(records: list[dict], report: Path) -> str:
    for record in records:
        versions = record.get("versions") if isinstance(record.get("versions"), dict) else {}
        recorded = record.get("commit") or versions.get("commit") or versions.get("nin_ablate_commit")
        if isinstance(recorded, str) and recorded:
            return recorded[:7]
    for where in (report.parent, REPO):
        done = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        )
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return "unknown"


def caption(report: Path, records: list[dict], cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    grid = report.parent.parent.name
    statuses = Counter(str(r.get("status")) for r in records)
    precisions = Counter(str(r["precision"]) for r in records if r.get("precision"))
    precision = "/".join(p for p, _ in precisions.most_common()) or "precision not recorded"
    gpus = sorted({str(r["device_name"]) for r in records if r.get("device_name") not in (None, "", "cpu")})
    machine = ", ".join(gpus) if gpus else cpu_name(cpuinfo)
    finished = sorted(str(r["finished"])[:10] for r in records if r.get("finished"))
    date = f" on {finished[-1]}" if finished else ""
    return (
        f"*The verdicts section of the `{grid}` grid's report.html ({statuses.get('ok', 0)} of {len(records)} runs "
        f"ok{date}): {machine}, {precision}, commit {commit_of(records, report)}. "
        f"Redrawn with its caption by `make screenshot`.*"
    )


def write_caption(readme: Path, png: Path, text: str) -> None:
    content = readme.read_text()
    begin = BEGIN.search(content)
    end = content.find(END, begin.end()) if begin else -1
    if begin is None or end < 0:
        raise ScreenshotError(f"{readme} has no '<!-- verdicts-screenshot ... -->' ... '{END}' markers")
    image = Path(os.path.relpath(png.resolve(), readme.resolve().parent)).as_posix()
    block = f"\n![The verdicts section of a nin-ablate report.html]({image})\n\n{text}\n"
    readme.write_text(content[: begin.end()] + block + content[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.screenshot", description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", type=Path, default=DEFAULT_REPORT, help="a report.html")
    parser.add_argument("--png", type=Path, default=DEFAULT_PNG, help="where the picture goes")
    parser.add_argument("--readme", type=Path, default=DEFAULT_README, help="the file whose caption to rewrite")
    args = parser.parse_args(argv)
    try:
        if not args.report.is_file():
            raise ScreenshotError(f"no report at {args.report}: run make demo first")
        try:
            page = verdicts_page(args.report.read_text(encoding="utf-8"), args.report.parent)
        except ScreenshotError as error:
            raise ScreenshotError(f"{args.report} {error}") from None
        render(page, args.png)
        records = results_of(args.report)
        write_caption(args.readme, args.png, caption(args.report, records))
    except ScreenshotError as error:
        print(f"nin-ablate screenshot: {error}", file=sys.stderr)
        return 1
    print(f"{args.png} and its caption in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
