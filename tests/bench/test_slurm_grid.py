"""bench.slurm_grid's comparison: what measures the clock is set aside, anything else that differs is caught. (The
timing itself starts a Slurm and is a benchmark, run by hand: docs/SLURM.md "Measured".)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.slurm_grid import same_files
from nin.layout import LOOKS_FILE, METRICS_FILE, REPORT_DIR, RESULT_FILE, RUNS_DIR

CLAIMS = {"gap_accuracy_vs_fc": {"mean": 0.01}, "gap_seconds_to_fit_vs_fc": {"mean": 0.07}}
VERDICTS = ("claim,verdict,mean\nGAP matches or beats the FC head in test accuracy,supported,0.01\n"
            "GAP reaches the training criterion in less wall time than the FC head,inconclusive,0.07\n")  # fmt: skip


def _grid(root: Path) -> Path:
    run = root / RUNS_DIR / "v1"
    run.mkdir(parents=True)
    (run / RESULT_FILE).write_text(json.dumps({"status": "ok", "test_acc": 0.9, "train_seconds": 12.0}))
    (run / METRICS_FILE).write_text(json.dumps({"epoch": 1, "test_acc": 0.9, "epoch_seconds": 12.0}) + "\n")
    (root / LOOKS_FILE).write_text(json.dumps({"looks": [{"look": 1, "claims": CLAIMS, "decision": "stop"}]}))
    (root / REPORT_DIR).mkdir()
    (root / REPORT_DIR / "verdicts.csv").write_text(VERDICTS)
    return root


def _edit(path: Path, old: str, new: str) -> None:
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))


def test_timings_and_wall_time_claims_are_set_aside_and_any_other_difference_is_caught(tmp_path: Path) -> None:
    local = _grid(tmp_path / "local")
    slurm = tmp_path / "slurm"
    shutil.copytree(local, slurm)
    _edit(slurm / RUNS_DIR / "v1" / RESULT_FILE, '"train_seconds": 12.0', '"train_seconds": 30.0')
    _edit(slurm / RUNS_DIR / "v1" / METRICS_FILE, '"epoch_seconds": 12.0', '"epoch_seconds": 30.0')
    _edit(slurm / LOOKS_FILE, '"mean": 0.07', '"mean": -0.04')
    _edit(slurm / REPORT_DIR / "verdicts.csv", "inconclusive,0.07", "inconclusive,-0.04")
    assert same_files(local, slurm) == {"runs": True, "looks.json": True, "verdicts.csv": True}

    for path, old, new, part in (
        (RUNS_DIR + "/v1/" + RESULT_FILE, '"test_acc": 0.9', '"test_acc": 0.8', "runs"),
        (LOOKS_FILE, '"mean": 0.01', '"mean": 0.02', "looks.json"),
        (REPORT_DIR + "/verdicts.csv", "supported,0.01", "inconclusive,0.01", "verdicts.csv"),
    ):
        changed = tmp_path / f"changed-{part}"
        shutil.copytree(slurm, changed)
        _edit(changed / path, old, new)
        assert same_files(local, changed) == {key: key != part for key in ("runs", "looks.json", "verdicts.csv")}
