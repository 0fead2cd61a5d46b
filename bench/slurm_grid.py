"""A small `--until-resolved` grid on the local executor and through a real single-node Slurm, timed and compared.

    python -m bench.slurm_grid [--epochs 2] [--max-seeds 3] [--out DIR] [--json]

Starts its own Slurm on this machine (munged, slurmctld and slurmd, as the suite's tests/reliability/slurm_cluster.py
does; root and Debian's slurm packages needed), trains the same grid both ways at one thread per run, two runs at a
time, and says how long each took and whether the result files (timings aside), looks.json and verdicts.csv are
equal. What Slurm adds is its own cost per job (each job starts Python and torch) and a look waiting on its whole
round; this figure is what docs/SLURM.md "Measured" quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from judge.verdicts import WALL_TIME_KEY
from nin.device import load_average
from nin.layout import LOOKS_FILE, REPORT_DIR, GridDir

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("{arch: cifar, width: 0.125, dataset: digits, image_size: 32, batch_size: 32, epochs: EPOCHS, lr: 0.02, "
            "momentum: 0.9, precision: fp32}")  # fmt: skip
AXES = "axes: {head: [gap, fc], cccp: [0, 2]}\nseeds: [0, 1]\n"
FLAGS = ("--wandb", "disabled", "--no-progress", "--cpu-threads", "1")
LOCAL = ("--device", "cpu,cpu")  # two workers, as the test cluster's two job slots
SLURM = ("--device", "cpu", "--executor", "slurm", "--slurm", "poll_s=0.5", "--slurm", "timeout_min=30")


def run_grid(spec: Path, out: Path, max_seeds: int, executor: tuple[str, ...], env: dict[str, str]) -> float:
    """Seconds `nin-ablate run SPEC --until-resolved` took; raises with its output when it fails."""
    argv = [sys.executable, "-m", "runners", "run", str(spec), "--out", str(out), *FLAGS, *executor,
            "--until-resolved", "--max-seeds", str(max_seeds)]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env}, capture_output=True,
                          text=True, check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: a claim still open at the last look, which is an outcome here
        raise SystemExit(f"nin-ablate run exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds


def same_files(a: Path, b: Path) -> dict[str, bool]:
    """Whether two results directories hold the same runs, looks.json and verdicts.csv, what measures the clock
    aside: the runs' timings, and the wall-time claims (their numbers; they never decide a look)."""
    from tests.reliability.helpers import comparable

    return {
        "runs": comparable(a) == comparable(b),
        "looks.json": _looks_but_wall_time(a) == _looks_but_wall_time(b),
        "verdicts.csv": _verdicts_but_wall_time(a) == _verdicts_but_wall_time(b),
    }


def _looks_but_wall_time(grid: Path) -> dict:
    record = json.loads((grid / LOOKS_FILE).read_text())
    for look in record["looks"]:
        look["claims"] = {key: claim for key, claim in look["claims"].items() if not key.startswith(WALL_TIME_KEY)}
    return record


def _verdicts_but_wall_time(grid: Path) -> list[str]:
    rows = (grid / REPORT_DIR / "verdicts.csv").read_text().splitlines()
    return [row for row in rows if "less wall time" not in row.split(",", 1)[0]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slurm_grid", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="keep both results directories here")
    parser.add_argument("--json", action="store_true", help="the figures as one JSON object")
    args = parser.parse_args(argv)
    from tests.reliability.slurm_cluster import missing, slurm_cluster

    if missing() is not None:
        raise SystemExit(f"bench.slurm_grid: {missing()}")
    out = args.out or Path(tempfile.mkdtemp(prefix="nin-slurm-bench-"))
    spec = out / "grid.yaml"
    out.mkdir(parents=True, exist_ok=True)
    spec.write_text(f"name: bench\nsettings: {SETTINGS.replace('EPOCHS', str(args.epochs))}\n{AXES}")
    local_seconds = run_grid(spec, out / "local", args.max_seeds, LOCAL, {})
    with slurm_cluster(cpus=2) as cluster:
        slurm_seconds = run_grid(spec, out / "slurm", args.max_seeds, SLURM, cluster.env)
    local, slurm = GridDir(out / "local" / "bench"), GridDir(out / "slurm" / "bench")
    figures = {
        "runs": len(local.finished_ids()),
        "local_s": round(local_seconds, 1),
        "slurm_s": round(slurm_seconds, 1),
        "equal": same_files(local.root, slurm.root),
        "load_avg_after": load_average(),
        "cpu_count": os.cpu_count(),
        "out": str(out),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{figures['runs']} runs: local executor {figures['local_s']} s, Slurm {figures['slurm_s']} s; equal: "
              f"{', '.join(k for k, same in figures['equal'].items() if same) or 'nothing'}; "
              f"load average {figures['load_avg_after']} on {figures['cpu_count']} cores")  # fmt: skip
    return 0 if all(figures["equal"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
