"""The world misbehaves: no W&B server, a full disk, a second runner, a runner killed holding the lock, no GPU, no
data offline. Each gives one clear line; training results are never lost or damaged."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nin import layout, store
from nin.layout import GridDir
from runners.cli import main
from runners.lock import GridLock
from runners.run import RunOptions, run_grid
from tests.conftest import REPO, run_cli
from tests.reliability.helpers import QUIET, SETTINGS, assert_nothing_written, assert_one_clear_line, write_grid

FAKE_KEY = "f" * 20 + "0123456789abcdef0123"  # 40 characters, the shape of a real W&B key


def test_wandb_online_without_a_server_is_one_warning_and_training_completes(tmp_path):
    spec = write_grid(
        tmp_path / "grid.yaml", "axes: {cccp: [2]}\n", settings=SETTINGS.replace("epochs: 3", "epochs: 2")
    )
    env = {
        "WANDB_BASE_URL": "http://127.0.0.1:9",  # the discard port: nothing listens, connections are refused
        "WANDB_API_KEY": FAKE_KEY,
        "WANDB_INIT_TIMEOUT": "3",  # nin.tracking leaves wandb's own setting alone when the user gives one
        "WANDB_SILENT": "true",
    }
    proc = run_cli("run", str(spec), "--out", str(tmp_path / "out"), "--wandb", "online", "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr
    grid = tmp_path / "out" / "rel"
    (run_dir,) = (grid / "runs").iterdir()
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert all(line.startswith("nin-ablate: ") for line in warnings), proc.stderr  # no wandb noise, no traceback
    about_variant = [line for line in warnings if run_dir.name in line]
    assert len(about_variant) == 1 and "W&B tracking off" in about_variant[0], proc.stderr
    assert "training continues" in about_variant[0]
    result = layout.read_result(run_dir / layout.RESULT_FILE)
    assert result["status"] == "ok" and result["epochs_done"] == 2
    assert len((run_dir / layout.METRICS_FILE).read_text().splitlines()) == 2
    assert (grid / "report" / "report.html").is_file()
    assert FAKE_KEY not in proc.stdout + proc.stderr


def _options(spec: Path, out: Path, **extra) -> RunOptions:
    return RunOptions(spec=spec, out=out, wandb="disabled", progress=False, report=False, **extra)


def test_disk_full_while_writing_a_result_marks_that_run_failed_and_keeps_the_rest(tmp_path, monkeypatch, capsys):
    spec = write_grid(tmp_path / "grid.yaml", settings=SETTINGS.replace("epochs: 3", "epochs: 2"))
    out = tmp_path / "out"
    grid = GridDir(out / "rel")
    assert run_grid(_options(spec, out, only=("cifar-gap-cccp0",))) == 0
    (first,) = [p.parent.name for p in grid.runs.glob("*/result.json")]
    earlier = {name: (grid.run_dir(first) / name).read_bytes() for name in (layout.RESULT_FILE, layout.METRICS_FILE)}

    real_write = store.atomic_write_bytes
    attempts: dict[str, int] = {}

    def disk_full(path: Path, data: bytes) -> None:
        variant = path.parent.name
        if path.name == layout.RESULT_FILE and ("cccp1" in variant or "cccp2" in variant):
            attempts[variant] = attempts.get(variant, 0) + 1
            # cccp1: only the result write fails, so the failure itself can be recorded; cccp2: every write fails.
            if "cccp2" in variant or attempts[variant] == 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, data)

    monkeypatch.setattr(store, "atomic_write_bytes", disk_full)
    assert run_grid(_options(spec, out)) == 1
    output = capsys.readouterr().out
    failed = {p.parent.name: layout.read_result(p) for p in grid.runs.glob("*cccp1*/result.json")}
    (recorded,) = failed.values()
    assert recorded["status"] == "failed" and recorded["epochs_done"] == 2
    where = grid.result_path(recorded["variant_id"])
    assert recorded["error"] == f"OSError: [Errno {errno.ENOSPC}] No space left on device: '{where}'"
    (unrecorded,) = [p.name for p in grid.runs.iterdir() if "cccp2" in p.name]
    assert not grid.is_finished(unrecorded)
    assert output.count(f"{unrecorded}: could not record the failure either") == 1
    assert store.load_checkpoint(grid.run_dir(unrecorded) / layout.CHECKPOINT_FILE, unrecorded)["epoch"] == 2

    monkeypatch.setattr(store, "atomic_write_bytes", real_write)  # space again: the unrecorded run is retried
    assert run_grid(_options(spec, out)) == 1  # the recorded failure stands until its result.json is removed
    assert layout.read_result(grid.result_path(unrecorded))["status"] == "ok"
    assert f"{unrecorded}: resuming after epoch 2" in capsys.readouterr().out
    assert {name: (grid.run_dir(first) / name).read_bytes() for name in earlier} == earlier
    assert layout.read_result(grid.result_path(recorded["variant_id"])) == recorded
    assert not list(out.rglob("*.tmp-*"))


def test_second_runner_on_the_same_out_dir_is_refused(tmp_path):
    spec = write_grid(tmp_path / "grid.yaml")
    out = tmp_path / "out"
    with GridLock(GridDir(out / "rel")):
        proc = run_cli("run", str(spec), "--out", str(out), *QUIET)
    assert proc.returncode == 2
    assert_one_clear_line(proc.stderr, "another nin-ablate run", f"pid {os.getpid()}", "--out")
    assert sorted(p.name for p in (out / "rel").iterdir()) == [".lock"]  # the refused runner wrote nothing


def test_the_lock_does_not_outlive_a_killed_runner(tmp_path):
    grid = GridDir(tmp_path / "out" / "rel")
    holder = (
        "import sys, time\nfrom pathlib import Path\n"
        "from nin.layout import GridDir\nfrom runners.lock import GridLock\n"
        f"with GridLock(GridDir(Path({str(grid.root)!r}))):\n    print('held', flush=True)\n    time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", holder], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(Exception, match=f"pid {child.pid}"):
            GridLock(grid).__enter__()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    with GridLock(grid):  # the kernel dropped the flock with the process; the stale .lock file is harmless
        assert (grid.root / ".lock").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_device_cuda_without_a_gpu_says_what_to_do(tmp_path, capsys):
    spec = write_grid(tmp_path / "grid.yaml")
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), *QUIET, "--device", "cuda"]) == 2  # the last --device wins
    assert_one_clear_line(capsys.readouterr().err, "--device cuda", "no", "--device cpu")
    assert_nothing_written(out)


def test_fashion_mnist_offline_without_data_names_the_files_and_the_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --data-dir, ./data, does not exist here
    spec = write_grid(tmp_path / "grid.yaml", settings=SETTINGS.replace("synthetic", "fashion-mnist"))
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), *QUIET]) == 2
    line = assert_one_clear_line(capsys.readouterr().err, "fashion-mnist", "not found", "--data-dir", "--download")
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        assert name in line
    assert str(tmp_path / "data" / "FashionMNIST" / "raw") in line
    assert_nothing_written(out)
