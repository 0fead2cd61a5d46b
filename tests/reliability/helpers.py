"""What the reliability tests share: a tiny grid, the quiet flags, and the checks every bad input must pass."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

from nin import layout

# Tiny on purpose: a variant trains 3 epochs in about a second on 2 CPU cores.
SETTINGS = (
    "{arch: cifar, width: 0.125, dataset: synthetic, image_size: 16, train_size: 200, test_size: 50, "
    "batch_size: 50, epochs: 3, lr: 0.05, momentum: 0.9, precision: fp32}"
)
QUIET = ("--wandb", "disabled", "--no-progress", "--device", "cpu")  # CPU: where resumed metrics are exact
# Where a run happened, how fast and beside what, not what it computed (nin.layout owns the lists).
TIMING_KEYS = frozenset(layout.TIMING_KEYS) | frozenset(layout.METRICS_TIMING_KEYS)


def write_grid(
    path: Path, body: str = "axes: {cccp: [0, 1, 2]}\n", name: str = "rel", settings: str = SETTINGS
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"name: {name}\nsettings: {settings}\n" + textwrap.dedent(body))
    return path


def as_at_a_terminal() -> None:
    """preexec_fn for a runner a test stops with a signal: its signals as at a terminal. A suite started in the
    background (`make test &`, a non-interactive shell) hands its children SIGINT ignored, and `nohup` SIGHUP; a Python
    so started never sees them."""
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.SIG_DFL)


def results(grid_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(grid_dir.glob("runs/*/result.json"))}


def comparable(grid_dir: Path) -> dict[str, tuple[dict, list[dict]]]:
    """Per variant: result.json and metrics.jsonl lines, with what depends on the machine or the clock left out."""
    out = {}
    for variant_id, result in results(grid_dir).items():
        lines = (grid_dir / "runs" / variant_id / "metrics.jsonl").read_text().splitlines()
        rows = [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]
        out[variant_id] = ({k: v for k, v in result.items() if k not in TIMING_KEYS}, rows)
    return out


def metrics(grid_dir: Path, variant_id: str) -> list[dict]:
    lines = (grid_dir / "runs" / variant_id / "metrics.jsonl").read_text().splitlines()
    return [without_timing(json.loads(line)) for line in lines]


def without_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMING_KEYS}


def temp_files(root: Path) -> list[Path]:
    """Files the atomic writer leaves when killed between write and rename."""
    return sorted(p for p in root.rglob("*") if ".tmp-" in p.name)


def assert_one_clear_line(stderr: str, *must_contain: str) -> str:
    """Bad input: exactly one stderr line, 'nin-ablate: error: ...', naming the problem, no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    line = lines[0]
    assert line.startswith("nin-ablate: error: "), line
    assert "Traceback" not in stderr and 'File "' not in stderr, stderr
    for text in must_contain:
        assert text.lower() in line.lower(), f"{text!r} not in: {line}"
    return line


def assert_nothing_written(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir()), f"bad input wrote {sorted(out.rglob('*'))}"
