"""Ray across several nodes for real, and a bounded, write-nothing connect when the cluster is not there.

The cluster: a head with no CPUs and two 1-CPU worker nodes on this machine (tests/reliability/ray_cluster.py), with
token authentication on as a cluster user turns it on. The grid goes through the real CLI, `--ray-address HEAD:PORT`;
one worker node is SIGKILLed while both nodes are mid-variant. Pass: exit 0, exactly one result.json per variant, and
every result.json and metrics.jsonl equal to a local run at the same thread count, timings and device aside.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.reliability.helpers import (
    QUIET,
    assert_nothing_written,
    assert_one_clear_line,
    comparable,
    results,
    temp_files,
    write_grid,
)
from tests.reliability.ray_cluster import LOOPBACK, local_cluster, marked_pids

pytest.importorskip("ray", reason="the Ray extra is not installed: pip install 'nin-ablate[ray]'")

# 6 variants of 6 epochs, ~0.2 s an epoch on one core: each node trains 3 in a row, so both are mid-variant for
# most of the grid and the kill lands with work in flight on the node it kills.
EPOCHS = 6
SETTINGS = (
    "{arch: cifar, width: 0.125, dataset: synthetic, image_size: 16, train_size: 400, test_size: 50, "
    f"batch_size: 50, epochs: {EPOCHS}, lr: 0.05, momentum: 0.9, precision: fp32}}"
)
GRID = "seeds: [0, 1]\naxes: {cccp: [0, 1, 2]}\n"
FLAGS = (*QUIET, "--cpu-threads", "1")  # equal threads on both sides: CPU results are then bit-identical
# Ray turns a loopback --ray-address into this machine's network address, assuming nodes on other hosts; this Ray
# setting says the cluster is single-host, so the driver dials the head on 127.0.0.1 where the test cluster listens.
SINGLE_HOST = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def epochs_done(grid_dir: Path) -> dict[str, int]:
    """Variants training right now (a finished epoch, no result yet) and how many epochs each has finished."""
    done = {}
    for run in (grid_dir / "runs").iterdir():
        if not (run / "result.json").exists() and (run / "metrics.jsonl").exists():
            done[run.name] = len((run / "metrics.jsonl").read_text().splitlines())
    return done


def both_nodes_mid_variant(grid_dir: Path) -> bool:
    """Two variants in flight (one per 1-CPU node), each with 2+ epochs to go: whichever node dies, its task is
    still training when the kill lands. Each node spends 4 of a variant's 6 epochs in that state, so both are in it
    at once for at least a third of the grid."""
    in_flight = epochs_done(grid_dir)
    return len(in_flight) == 2 and all(1 <= n <= EPOCHS - 2 for n in in_flight.values())


def test_grid_survives_a_worker_node_killed_mid_grid(tmp_path):
    spec = write_grid(tmp_path / "grid.yaml", GRID, name="cluster", settings=SETTINGS)
    out, grid_dir = tmp_path / "ray", tmp_path / "ray" / "cluster"
    log = tmp_path / "ray.log"
    # Short on purpose: Ray's socket paths live under it and must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="nin-ray-", dir="/tmp"))
    env_base = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    # The reference trains while the cluster starts: the two together fit the time budget.
    reference = subprocess.Popen(
        [sys.executable, "-m", "runners", "run", str(spec), "--out", str(tmp_path / "local"), *FLAGS],
        cwd=REPO, env=env_base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    runner = intruder = None
    try:
        with local_cluster(root, REPO) as cluster:
            node_pids = {pid for pids in cluster.node_pids.values() for pid in pids}
            seen = marked_pids(root)
            assert node_pids <= seen, "the leftover check must see the cluster's own processes"
            env = {**env_base, **cluster.env, **SINGLE_HOST}

            ray_run = ("run", str(spec), *FLAGS, "--executor", "ray", "--ray-address", cluster.address)
            with log.open("w") as sink:
                runner = subprocess.Popen(
                    [sys.executable, "-m", "runners", *ray_run, "--out", str(out)],
                    cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT,
                )  # fmt: skip
            # Meanwhile, a driver holding another token must be refused in seconds, one line, nothing written.
            intruder = subprocess.Popen(
                [sys.executable, "-m", "runners", *ray_run, "--out", str(tmp_path / "refused")],
                cwd=REPO, env={**env, "RAY_AUTH_TOKEN": "0" * 64}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while not ((grid_dir / "runs").is_dir() and both_nodes_mid_variant(grid_dir)):
                assert runner.poll() is None, f"the grid ended before both nodes were mid-variant:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"both nodes never trained at once:\n{log.read_text()}"
                time.sleep(0.02)
            killed_mid_variant = sorted(epochs_done(grid_dir))
            cluster.kill_worker_node()
            refused = intruder.communicate(timeout=120)
            assert intruder.returncode == 2, refused
            assert_one_clear_line(refused[1], cluster.address, "token", "RAY_AUTH_MODE=token")
            assert_nothing_written(tmp_path / "refused")
            assert runner.wait(timeout=90) == 0, log.read_text()
            # The lost task ran again on the other node and picked up from its checkpoint (Ray task logs).
            task_logs = "".join(f.read_text(errors="replace") for f in root.rglob("*.out"))
            resumed = [v for v in killed_mid_variant if f"{v}: resuming after epoch" in task_logs]
    finally:
        for proc in (runner, intruder, reference):
            if proc is not None and proc.poll() is None:
                proc.kill()
        left = marked_pids(root)  # every process the cluster, its nodes and the driver started carries the mark
        shutil.rmtree(root, ignore_errors=True)
    assert not left, f"processes of the test cluster outlived it: {sorted(left)}"

    ref_log = reference.communicate(timeout=60)[0]
    assert reference.returncode == 0, ref_log
    expected = comparable(tmp_path / "local" / "cluster")
    assert len(expected) == 6 and all(r["status"] == "ok" for r in results(tmp_path / "local" / "cluster").values())
    assert "6 ok, 0 diverged, 0 failed of 6 runs" in log.read_text(), log.read_text()
    # Exactly one result per variant: the same variant directories, each with its result.json, no temp file left.
    assert sorted(p.name for p in (grid_dir / "runs").iterdir()) == sorted(expected)
    assert not temp_files(grid_dir)
    assert len(resumed) == 1, f"expected one of {killed_mid_variant} to resume on the surviving node: {resumed}"
    got = comparable(grid_dir)
    for variant_id, (result, rows) in expected.items():
        assert got[variant_id][0] == result, variant_id
        assert got[variant_id][1] == rows, variant_id


def test_unreachable_ray_address_is_one_line_and_writes_nothing(tmp_path):
    spec = write_grid(tmp_path / "grid.yaml", GRID, name="cluster", settings=SETTINGS)
    address = f"{LOOPBACK}:{free_port()}"  # nothing listens there
    out = tmp_path / "out"
    started = time.monotonic()
    proc = run_cli("run", str(spec), "--out", str(out), *FLAGS, "--executor", "ray", "--ray-address", address,
                   timeout=180)  # fmt: skip
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert_one_clear_line(proc.stderr, address, "nothing answers", "ray start --head")
    assert_nothing_written(out)
    assert elapsed < 120, f"took {elapsed:.0f} s"  # generous: the bound in the code is under a minute
