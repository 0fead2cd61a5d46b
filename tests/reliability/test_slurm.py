"""`--executor slurm` against a real single-node Slurm (munged, slurmctld, slurmd started here: slurm_cluster.py).

One cluster per pytest worker, shared by the cases. Each case drives the real CLI while it acts on the jobs as a
cluster would: scancel, a preemption signal, a time limit, a lost node. The reference is the local executor at the
same thread count, growing the grid with --until-resolved: its CPU results the Slurm runs must equal, timings and
device aside, and its looks.json and verdicts.csv the sequence through Slurm must equal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nin import layout
from runners.cli import main
from tests.conftest import REPO
from tests.reliability.helpers import (
    QUIET,
    as_at_a_terminal,
    assert_nothing_written,
    assert_one_clear_line,
    comparable,
    results,
    write_grid,
)
from tests.reliability.slurm_cluster import PARTITION, SlurmCluster, missing, slurm_cluster
from tests.wandb_records import offline_runs

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))

# 6 epochs of about a second each: long enough to act on a job mid-variant.
EPOCHS = 6
SETTINGS = (
    "{arch: cifar, width: 0.125, dataset: synthetic, image_size: 16, train_size: 500, test_size: 50, "
    f"batch_size: 25, epochs: {EPOCHS}, lr: 0.05, momentum: 0.9, precision: fp32}}"
)
LONG_EPOCHS = 10_000  # never done in a test: the time-limited job trains until it is cancelled
GRID = "axes: {cccp: [1, 2]}\n"  # one seed, so no interval: look 1 adds seed 1 to both variants, look 2 stops
GROW = ("--until-resolved", "--max-seeds", "2")  # the smallest sequence that adds seeds: two rounds of jobs
FLAGS = (*QUIET, "--cpu-threads", "1")  # one thread on both sides: CPU results are then bit-identical
SLURM = ("--executor", "slurm", "--slurm", "poll_s=0.5", "--slurm", "timeout_min=30")
WAIT_S = 240  # a hang guard, not a time limit


@pytest.fixture(scope="session")
def shared_cluster():
    with slurm_cluster() as started:
        yield started


@pytest.fixture
def cluster(shared_cluster):
    """The worker's cluster, handed on empty: a case that failed leaves no job (held, requeued, completing) for the
    next case to find."""
    yield shared_cluster
    shared_cluster.cancel_all()


class Reference:
    """The grid grown by --until-resolved on the local executor, uninterrupted: it trains while the Slurm cases run,
    and is read when needed. Its seed-0 runs are the plain grid's."""

    def __init__(self, out: Path):
        spec = write_grid(out / "grid.yaml", GRID, name="slurm", settings=SETTINGS)
        self.grid_dir = out / "slurm"
        self.proc = subprocess.Popen([sys.executable, "-m", "runners", "run", str(spec), "--out", str(out), *FLAGS,
                                      *GROW], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        self._files: dict | None = None

    def files(self, seeds: tuple[int, ...] = (0, 1)) -> dict:
        if self._files is None:
            code, _, err = finish(self.proc)
            assert code == 0, err
            self._files = comparable(self.grid_dir)
        return {vid: files for vid, files in self._files.items() if files[0]["seed"] in seeds}


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    ref = Reference(tmp_path_factory.mktemp("local"))
    yield ref
    if ref.proc.poll() is None:
        ref.proc.kill()
        ref.proc.wait()


def start_runner(cluster: SlurmCluster, spec: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **cluster.env}
    return subprocess.Popen([sys.executable, "-m", "runners", "run", str(spec), "--out", str(out), *FLAGS, *SLURM,
                             *extra], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=as_at_a_terminal)  # fmt: skip


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


def read_until(proc: subprocess.Popen, text: str) -> None:
    """Read the runner's stdout up to the line holding `text` (that line says what the runner does next)."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"the runner ended without saying {text!r}: {''.join(seen)}{proc.communicate()[1]}")


def wait_for(condition, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert proc is None or proc.poll() is None, f"the runner ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)


def epochs(grid_dir: Path) -> dict[str, int]:
    found = {}
    for path in grid_dir.glob("runs/*/metrics.jsonl"):
        found[path.parent.name] = len(path.read_text().splitlines())
    return found


def hit_mid_variant(cluster: SlurmCluster, grid_dir: Path, actions: dict[str, tuple[str, ...]]) -> bool:
    """Run each variant's Slurm command (once) when it has 1 or 2 epochs done; True when all have run."""
    for variant_id, done in epochs(grid_dir).items():
        if variant_id in actions and 1 <= done <= EPOCHS - 4:
            cluster.run(*actions.pop(variant_id))
    return not actions


def jobs(grid_dir: Path) -> dict[str, str]:
    try:
        return json.loads((grid_dir / "slurm" / "jobs.json").read_text())
    except (OSError, ValueError):
        return {}


def job_log(grid_dir: Path, job: str) -> str:
    return "".join(p.read_text(errors="replace") for p in (grid_dir / "slurm" / "logs").glob(f"{job}_*log.out"))


def assert_equal(grid_dir: Path, expected: dict) -> None:
    got = comparable(grid_dir)
    assert sorted(got) == sorted(expected)
    for variant_id, (result, rows) in expected.items():
        assert got[variant_id][1] == rows, variant_id
        assert got[variant_id][0] == result, variant_id


def test_ctrl_c_collect_cancel_preemption_and_time_limit(cluster, reference, tmp_path, monkeypatch, capsys):
    """Ctrl-C leaves the jobs queued, a local run refuses to train their variants, and a second runner collects them
    without submitting again; then one job is cancelled (a failed result naming CANCELLED) and the other preempted
    (it requeues itself and resumes from its checkpoint); a rerun trains only the cancelled variant. Every result
    then equals the local executor's.

    Meanwhile, beside it (the node has the slots), a one-minute job told to checkpoint 45 s before its limit, on a
    variant longer than the test: Slurm's own signal reaches it while it trains (the controller looks at time limits
    about every 30 s), and it checkpoints, requeues itself and resumes from the checkpoint; then it is cancelled."""
    spec = write_grid(tmp_path / "grid.yaml", GRID, name="slurm", settings=SETTINGS)
    out, grid_dir = tmp_path / "out", tmp_path / "out" / "slurm"
    long = SETTINGS.replace(f"epochs: {EPOCHS}", f"epochs: {LONG_EPOCHS}")
    limit_spec = write_grid(tmp_path / "limit.yaml", "axes: {cccp: [1]}\n", name="limit", settings=long)
    limited = start_runner(cluster, limit_spec, tmp_path / "limit", "--slurm", "timeout_min=1", "--slurm",
                           "signal_delay_s=45", "--slurm", "max_num_timeout=20")  # fmt: skip
    limit_dir = tmp_path / "limit" / "limit"

    tracked = ("--wandb", "offline")  # the preempted variant's W&B run must resume, not open a second one
    # Held (sbatch --hold, through additional_parameters) until the second runner watches them: they cannot finish
    # while no runner does.
    first = start_runner(cluster, spec, out, *tracked, "--slurm", "additional_parameters={hold: true}")
    wait_for(lambda: len(jobs(grid_dir)) == 2, first, "the jobs were submitted")
    first.send_signal(signal.SIGINT)
    code, _, err = finish(first)
    assert code == 130, err
    assert "stay queued" in err and "run the same command to collect" in err, err
    submitted = jobs(grid_dir)

    second = start_runner(cluster, spec, out, *tracked)
    # While it starts, the local executor must not train what those jobs will: one line, nothing trained. (It is
    # refused in the checks, before the grid's lock that the second runner may hold by then.)
    monkeypatch.setenv("SLURM_CONF", cluster.env["SLURM_CONF"])
    assert main(["run", str(spec), "--out", str(out), *FLAGS]) == 2
    assert_one_clear_line(capsys.readouterr().err, "2 Slurm job(s)", "--executor slurm")
    assert not results(grid_dir) and not epochs(grid_dir)
    read_until(second, "collecting 2 run(s) from Slurm jobs")  # from here on, it watches the queue
    assert jobs(grid_dir) == submitted  # collected, not submitted again
    cluster.run("scontrol", "release", *submitted.values())
    cancelled, preempted = sorted(submitted)
    # Each job is hit once its variant is mid-variant: an epoch or more done, three or more to go.
    actions = {cancelled: ("scancel", submitted[cancelled]),
               preempted: ("scancel", "--signal=USR2", submitted[preempted])}  # what Slurm sends to preempt
    wait_for(lambda: hit_mid_variant(cluster, grid_dir, actions), second, "both variants were hit mid-variant")

    [(variant_id, job)] = jobs(limit_dir).items()
    wait_for(lambda: f"{variant_id}: resuming after epoch" in job_log(limit_dir, job), limited,
             "the time-limited job resumed")  # fmt: skip
    log = job_log(limit_dir, job)
    assert "this job is timed-out" in log and "Requeued job" in log, log
    resumed_at = int(log.split(f"{variant_id}: resuming after epoch")[1].split()[0])
    cluster.run("scancel", job)
    code, _, err = finish(limited)
    assert code == 1 and results(limit_dir)[variant_id]["slurm"]["state"] == "CANCELLED", err
    rows = [json.loads(line) for line in (limit_dir / "runs" / variant_id / "metrics.jsonl").read_text().splitlines()]
    assert 0 < resumed_at < len(rows) and [row["epoch"] for row in rows] == list(range(1, len(rows) + 1))

    code, stdout, err = finish(second)
    assert code == 1, (err, {v: job_log(grid_dir, job) for v, job in submitted.items()})
    found = results(grid_dir)
    assert found[preempted]["status"] == "ok"
    assert found[cancelled]["status"] == "failed"
    assert "CANCELLED" in found[cancelled]["error"] and "cancelled" in found[cancelled]["error"]
    assert found[cancelled]["slurm"]["state"] == "CANCELLED"
    log = job_log(grid_dir, submitted[preempted])
    assert "this job is preempted" in log
    resumed = [int(line.split("resuming after epoch")[1].split()[0]) for line in log.splitlines()
               if f"{preempted}: resuming after epoch" in line]  # fmt: skip
    assert len(resumed) == 1 and 0 < resumed[0] < EPOCHS, log

    third = start_runner(cluster, spec, out, *tracked)
    code, stdout, err = finish(third)
    assert code == 0, err
    assert "1 of 2 runs to train" in stdout and "1 resuming from a checkpoint" in stdout, stdout
    assert jobs(grid_dir)[preempted] == submitted[preempted]
    assert_equal(grid_dir, reference.files(seeds=(0,)))
    # One W&B run per variant, by its id: the requeued job's part resumes it (offline, each part is a folder). The
    # cancelled job's part was killed before W&B wrote its records: it has none, and never will.
    parts = [r for r in offline_runs(grid_dir, unfinished=1) if r.run is not None and r.run.job_type == "train"]
    preempted_parts = sorted((r for r in parts if r.run.run_id == preempted), key=lambda r: bool(r.run.resume))
    assert [bool(r.run.resume) for r in preempted_parts] == [False, True]
    epochs_logged = [row["epoch"] for part in preempted_parts for row in part.history]
    assert epochs_logged == list(range(1, resumed[0] + 1)) + list(range(resumed[0] + 1, EPOCHS + 1))
    assert {r.run.run_id for r in parts} == set(submitted)



def test_lost_node_fails_its_jobs_then_the_sequence_completes_as_locally(cluster, reference, tmp_path):
    """slurmd and its jobs die mid-grid, in the first round of an --until-resolved sequence: the runner does not wait
    on them, each becomes a failed result naming the node failure, and no look is taken over them. With slurmd back,
    a rerun trains them again from their checkpoints, looks, trains the seeds the look added as a second round of
    jobs, and ends with the local executor's result files, looks.json and verdicts.csv."""
    spec = write_grid(tmp_path / "grid.yaml", GRID, name="slurm", settings=SETTINGS)
    out, grid_dir = tmp_path / "out", tmp_path / "out" / "slurm"
    runner = start_runner(cluster, spec, out, *GROW)
    try:
        # Lost while both are in flight: one has finished an epoch or more, neither has a result.
        wait_for(lambda: not results(grid_dir) and any(1 <= n <= EPOCHS - 2 for n in epochs(grid_dir).values()),
                 runner, "a variant was mid-variant")  # fmt: skip
        cluster.lose_node()
        lost_at = time.monotonic()
        code, _, err = finish(runner)
        print(f"lost slurmd: failed results after {time.monotonic() - lost_at:.1f} s")
    finally:
        if "slurmd" not in cluster.procs:
            # Back once the controller has declared the node down, as a lost machine is by the time it returns: its
            # jobs are then cleared at once, rather than left completing until the controller retries their kill.
            cluster.wait_down()
            cluster.start_slurmd()
        cluster.wait_idle()
    assert code == 1, err
    found = results(grid_dir)
    assert sorted(found) == sorted(reference.files(seeds=(0,)))
    for result in found.values():
        assert result["status"] == "failed" and "NODE_FAIL" in result["error"] and "node failure" in result["error"]
    assert json.loads((grid_dir / layout.LOOKS_FILE).read_text())["looks"] == []  # the lost runs are not data

    code, stdout, err = finish(start_runner(cluster, spec, out, *GROW))
    assert code == 0, err
    assert "2 of 2 runs to train" in stdout and "look 1 of at most 2 (1 seeds)" in stdout, stdout
    assert "the report could not be written" not in err, err
    assert_equal(grid_dir, reference.files())
    # The same looks and verdicts: the grid has no head axis, so no wall-time claim, and nothing here is wall-clock.
    for name in (layout.LOOKS_FILE, "report/verdicts.csv"):
        assert (grid_dir / name).read_text() == (reference.grid_dir / name).read_text(), name


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        (("--slurm", f"partition=no-{PARTITION}"), ("partition", f"no-{PARTITION}", PARTITION)),
        (("--slurm", "timeout_min=0"), ("timeout_min", "greater than or equal to 1")),
        (("--slurm", "array_parallelism=-2"), ("array_parallelism", "greater than or equal to 1")),
        (("--slurm", "walltime=5"), ("walltime", "timeout_min")),
    ],
)
def test_bad_settings_are_one_line_and_submit_nothing(cluster, tmp_path, monkeypatch, capsys, setting, named):
    spec = write_grid(tmp_path / "grid.yaml", GRID, name="slurm", settings=SETTINGS)
    out = tmp_path / "out"
    monkeypatch.setenv("SLURM_CONF", cluster.env["SLURM_CONF"])
    before = cluster.run("squeue", "-h", "-t", "all", "-o", "%i")
    assert main(["run", str(spec), "--out", str(out), *FLAGS, "--executor", "slurm", *setting]) == 2
    assert_one_clear_line(capsys.readouterr().err, *named)
    assert_nothing_written(out)
    assert cluster.run("squeue", "-h", "-t", "all", "-o", "%i") == before
