"""The grid runner: layout, resume, failure isolation, exit codes, stale runs, executors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nin import layout
from tests.conftest import cli, run_cli
from tests.reliability import helpers as reliability_helpers
from tests.reliability.helpers import results, without_timing
from tests.reports_fixtures import without_wall_time

QUIET = ("--wandb", "disabled", "--no-progress")


def write_grid(path: Path, body: str) -> Path:
    return reliability_helpers.write_grid(path, body, name="t")


def test_run_writes_the_layout_then_a_rerun_trains_nothing(tmp_path):
    spec = write_grid(tmp_path / "g.yaml", "axes: {head: [gap, fc]}\n")
    first = cli("run", str(spec), "--out", str(tmp_path / "out"), *QUIET)
    assert first.returncode == 0, first.stderr
    grid_dir = tmp_path / "out" / "t"
    resolved = yaml.safe_load((grid_dir / "spec.yaml").read_text())
    assert resolved["name"] == "t" and len(resolved["variants"]) == 2
    for variant_id in resolved["variants"]:
        run_dir = grid_dir / "runs" / variant_id
        assert {p.name for p in run_dir.iterdir()} == {"result.json", "metrics.jsonl", "checkpoint.pt"}
        assert json.loads((run_dir / "result.json").read_text())["status"] == "ok"
    assert (grid_dir / "report" / "report.html").is_file()
    assert "2 ok, 0 diverged, 0 failed of 2 runs" in first.stdout
    assert str(grid_dir / "report" / "report.html") in first.stdout

    before = {p: p.stat().st_mtime_ns for p in grid_dir.glob("runs/*/*")}
    second = cli("run", str(spec), "--out", str(tmp_path / "out"), *QUIET)
    assert second.returncode == 0
    assert "already finished; nothing to train" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in grid_dir.glob("runs/*/*")} == before


def test_failed_and_diverged_variants_do_not_stop_the_grid(tmp_path):
    # train_size beyond the 500 synthetic images fails inside training; lr 10 with momentum 0.99 diverges.
    spec = write_grid(
        tmp_path / "g.yaml",
        """\
        axes: {head: [gap, fc]}
        include:
          - {head: fc, train_size: 100000}
          - {head: fc, lr: 10.0, momentum: 0.99}
    """,
    )
    result = cli("run", str(spec), "--out", str(tmp_path / "out"), *QUIET)
    assert result.returncode == 1, result.stderr
    by_status: dict[str, list[dict]] = {}
    for run in results(tmp_path / "out" / "t").values():
        by_status.setdefault(run["status"], []).append(run)
    assert len(by_status["ok"]) == 2
    [failed] = by_status["failed"]
    assert "train_size" in failed["error"] and "Traceback" in failed["traceback"]
    [diverged] = by_status["diverged"]
    assert "non-finite" in diverged["error"]
    assert "2 ok, 1 diverged, 1 failed of 4 runs" in result.stdout


def test_only_diverged_is_a_result_not_a_failure(tmp_path):
    spec = write_grid(tmp_path / "g.yaml", "include: [{head: fc, lr: 10.0, momentum: 0.99}]\n")
    result = cli("run", str(spec), "--out", str(tmp_path / "out"), *QUIET)
    assert result.returncode == 0
    assert "0 ok, 1 diverged, 0 failed" in result.stdout


def test_changed_grid_trains_new_ids_and_lists_stale_runs(tmp_path):
    spec = write_grid(tmp_path / "g.yaml", "axes: {head: [fc]}\n")
    assert cli("run", str(spec), "--out", str(tmp_path / "out"), *QUIET).returncode == 0
    old_ids = set(results(tmp_path / "out" / "t"))
    spec.write_text(spec.read_text().replace("lr: 0.05", "lr: 0.04"))
    rerun = cli("run", str(spec), "--out", str(tmp_path / "out"), *QUIET)
    assert rerun.returncode == 0, rerun.stderr
    assert "earlier version of this grid" in rerun.stderr and next(iter(old_ids)) in rerun.stderr
    new_ids = set(results(tmp_path / "out" / "t")) - old_ids
    assert len(new_ids) == 1
    report_rows = (tmp_path / "out" / "t" / "report" / "results.csv").read_text()
    assert next(iter(new_ids)) in report_rows and next(iter(old_ids)) not in report_rows


def test_train_one_variant_by_id_prefix(tmp_path):
    spec = write_grid(tmp_path / "g.yaml", "axes: {head: [gap, fc]}\n")
    listing = json.loads(cli("list", str(spec), "--json").stdout)
    wanted = listing[1]["variant_id"]
    result = cli("train", str(spec), "--variant", wanted[:-3], "--out", str(tmp_path / "out"), *QUIET)
    assert result.returncode == 0, result.stderr
    assert list(results(tmp_path / "out" / "t")) == [wanted]
    unknown = cli("train", str(spec), "--variant", "nope", "--out", str(tmp_path / "out"), *QUIET)
    assert unknown.returncode == 2 and "matches no variant" in unknown.stderr


def test_epochs_override_changes_ids_and_epochs(tmp_path):
    spec = write_grid(tmp_path / "g.yaml", "axes: {head: [fc]}\n")
    result = cli("run", str(spec), "--out", str(tmp_path / "out"), "--epochs", "1", *QUIET)
    assert result.returncode == 0, result.stderr
    [run] = results(tmp_path / "out" / "t").values()
    assert run["epochs"] == 1 and run["epochs_done"] == 1


def test_two_cpu_workers_give_the_same_results_as_one(tmp_path):
    spec = write_grid(tmp_path / "g.yaml", "axes: {head: [gap, fc], dropout: [true, false]}\n")
    # CPU results are bit-identical at equal thread counts (reduction order depends on the count).
    one = cli("run", str(spec), "--out", str(tmp_path / "one"), "--cpu-threads", "1", *QUIET)
    two = cli("run", str(spec), "--out", str(tmp_path / "two"), "--device", "cpu,cpu", "--cpu-threads", "1", *QUIET)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    a, b = results(tmp_path / "one" / "t"), results(tmp_path / "two" / "t")
    assert a.keys() == b.keys() and len(a) == 4
    for variant_id in a:
        assert without_timing(a[variant_id]) == without_timing(b[variant_id])


def test_ray_executor_produces_the_same_result_files_as_local(tmp_path):
    pytest.importorskip("ray", reason="the Ray extra is not installed: pip install 'nin-ablate[ray]'")
    spec = write_grid(tmp_path / "g.yaml", "axes: {head: [gap, fc]}\n")
    # Grown by --until-resolved on both sides: one seed has no interval, so look 1 adds seed 1 to both heads.
    grow = ("--until-resolved", "--max-seeds", "2")
    local = cli("run", str(spec), "--out", str(tmp_path / "local"), "--cpu-threads", "1", *grow, *QUIET)
    ray = run_cli(
        "run",
        str(spec),
        "--out",
        str(tmp_path / "ray"),
        "--executor",
        "ray",
        "--device",
        "cpu,cpu",
        "--cpu-threads",
        "1",
        *grow,
        *QUIET,
    )
    assert local.returncode == 0 and ray.returncode == 0, ray.stderr[-2000:]
    a, b = results(tmp_path / "local" / "t"), results(tmp_path / "ray" / "t")
    assert a.keys() == b.keys() and len(a) == 4 and {r["seed"] for r in b.values()} == {0, 1}
    looks = [without_wall_time(json.loads((tmp_path / d / "t" / layout.LOOKS_FILE).read_text()))
             for d in ("local", "ray")]  # fmt: skip
    assert looks[0] == looks[1]  # the same looks, seeds and decisions (wall seconds aside)
    for variant_id in a:
        assert without_timing(a[variant_id]) == without_timing(b[variant_id])
        metrics = [
            (tmp_path / d / "t" / "runs" / variant_id / layout.METRICS_FILE).read_text() for d in ("local", "ray")
        ]
        strip = [[without_timing(json.loads(line)) for line in m.splitlines()] for m in metrics]
        assert strip[0] == strip[1]


def test_wandb_disabled_never_imports_wandb_nor_writes_its_files(tmp_path):
    import subprocess
    import sys

    spec = write_grid(tmp_path / "g.yaml", "axes: {head: [fc]}\n")
    argv = ["run", str(spec), "--out", str(tmp_path / "out"), "--wandb", "disabled", "--no-progress"]
    code = f"import sys\nfrom runners.cli import main\nrc = main({argv!r})\nprint('wandb' in sys.modules, rc)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.stdout.strip().splitlines()[-1] == "False 0", done.stderr
    assert not list((tmp_path / "out").rglob("wandb"))


def test_ctrl_c_loses_only_the_epoch_in_flight(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = reliability_helpers.write_grid(
        tmp_path / "g.yaml", "axes: {head: [gap, fc]}\n", name="t",
        settings=reliability_helpers.SETTINGS.replace("epochs: 3", "epochs: 6"),
    )  # fmt: skip
    argv = [sys.executable, "-m", "runners", "run", str(spec), "--out", str(tmp_path / "out"), *QUIET]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    runner = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=reliability_helpers.as_at_a_terminal)  # fmt: skip
    first_metrics = tmp_path / "out" / "t" / "runs"
    deadline = time.monotonic() + 300
    while not list(first_metrics.glob("*/metrics.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, stderr = runner.communicate(timeout=120)
    assert runner.returncode == 130, stderr
    assert "Run the same command to resume" in stderr and "Traceback" not in stderr
    [checkpointed] = [p.parent for p in first_metrics.glob("*/checkpoint.pt")]
    assert not (checkpointed / "result.json").exists()
    rerun = cli("run", str(spec), "--out", str(tmp_path / "out"), *QUIET)
    assert rerun.returncode == 0, rerun.stderr  # the lock did not outlive the interrupted runner
    assert "resuming after epoch" in rerun.stdout + rerun.stderr
    assert all(r["status"] == "ok" and r["epochs_done"] == 6 for r in results(tmp_path / "out" / "t").values())
