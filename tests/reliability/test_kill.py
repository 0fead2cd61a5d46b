"""SIGKILL the real CLI mid-grid, at seeded random times and inside the two writes that matter, then rerun.

Acceptance: every variant ends with exactly one result.json, no temp file is ever read as a result, leftovers are
cleaned, a torn checkpoint is reported once and the variant restarts from scratch, and on CPU the final result.json
and metrics.jsonl equal those of an uninterrupted run of the same grid (timings aside).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from nin import layout, store
from reports import load_results
from tests.conftest import REPO, cli
from tests.reliability.helpers import QUIET, metrics, results, temp_files, without_timing, write_grid

KILL_SEED = 20240611
RANDOM_KILLS = 3
STARTED = "runs to train"  # run_grid prints this line once input is valid, right before the first variant


def start_cli(spec: Path, out: Path, log: Path, kill_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop(store.TEST_KILL_ENV, None)
    if kill_at:
        env[store.TEST_KILL_ENV] = kill_at
    with log.open("w") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "runners", "run", str(spec), "--out", str(out), *QUIET],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def wait_until_training(proc: subprocess.Popen, log: Path, timeout: float = 120) -> bool:
    """True once the runner says it is training; False if it exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if STARTED in log.read_text():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"the runner did not start training in {timeout} s:\n{log.read_text()}")


def killed_by_hook(spec: Path, out: Path, log: Path, kill_at: str) -> str:
    proc = start_cli(spec, out, log, kill_at)
    assert proc.wait(timeout=300) == -signal.SIGKILL, log.read_text()
    return log.read_text()


def test_sigkill_at_random_times_and_mid_write_then_rerun_equals_uninterrupted(tmp_path):
    spec = write_grid(tmp_path / "grid.yaml")
    reference = cli("run", str(spec), "--out", str(tmp_path / "ref"), *QUIET)
    assert reference.returncode == 0, reference.stderr
    ref_dir = tmp_path / "ref" / "rel"
    expected = results(ref_dir)
    assert len(expected) == 3 and all(r["status"] == "ok" and r["epochs_done"] == 3 for r in expected.values())

    out, grid = tmp_path / "out", tmp_path / "out" / "rel"
    log = tmp_path / "cli.log"
    first = sorted(expected, key=lambda i: expected[i]["cccp"])[0]  # the grid's first variant (cccp 0)

    # 1. Killed inside the 2nd checkpoint write: the temp file is complete, the rename never happened.
    killed_by_hook(spec, out, log, "checkpoint:2")
    assert [p.parent.name for p in temp_files(grid)] == [first]
    assert store.load_checkpoint(grid / "runs" / first / layout.CHECKPOINT_FILE, first)["epoch"] == 1
    assert not results(grid)

    # 2. Resumed, then killed inside the result.json write: a complete result sits under a temp name.
    text = killed_by_hook(spec, out, log, "result:1")
    assert f"{first}: resuming after epoch 1" in text
    leftovers = temp_files(grid)
    assert [p.name.startswith(".result.json.tmp-") for p in leftovers] == [True], leftovers
    assert not results(grid)
    read_back = load_results(grid)  # the report's reader never mistakes the temp file for a result
    assert read_back.runs.empty and first in read_back.unfinished

    # 3. A torn checkpoint (the finished one, cut in half): reported once, the variant restarts from scratch.
    checkpoint = grid / "runs" / first / layout.CHECKPOINT_FILE
    blob = checkpoint.read_bytes()
    checkpoint.write_bytes(blob[: len(blob) // 2])
    text = killed_by_hook(spec, out, log, "checkpoint:2")
    assert text.count("checksum mismatch") == 1 and text.count("training from scratch") == 1, text
    assert not any(".result.json.tmp-" in p.name for p in temp_files(grid))  # cleaned when the variant restarted
    assert len((grid / "runs" / first / layout.METRICS_FILE).read_text().splitlines()) == 1  # epoch 1 of the restart

    # 4. SIGKILL at seeded random moments of training.
    rng = random.Random(KILL_SEED)
    landed = 0
    for _ in range(RANDOM_KILLS):
        proc = start_cli(spec, out, log)
        if wait_until_training(proc, log):
            time.sleep(rng.uniform(0.2, 1.5))
            proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=300)
        landed += code == -signal.SIGKILL
        assert code in (0, -signal.SIGKILL), log.read_text()
    assert landed >= 1  # at least one random kill hit a grid that still had work left

    # 5. Rerun to completion.
    final = cli("run", str(spec), "--out", str(out), *QUIET)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "3 ok, 0 diverged, 0 failed of 3 runs" in final.stdout
    assert sorted(p.parent.name for p in grid.glob("runs/*/result.json")) == sorted(expected)
    assert temp_files(out) == []
    got = results(grid)
    for variant_id, result in expected.items():
        assert without_timing(got[variant_id]) == without_timing(result), variant_id
        assert metrics(grid, variant_id) == metrics(ref_dir, variant_id), variant_id
