"""The Slurm executor's pieces that need no cluster: settings, devices, when a job counts as lost, the stop signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from nin import layout, store, train
from nin.errors import InputError
from nin.layout import GridDir
from nin.variant import Variant
from runners import slurm
from runners.slurm import JobState, SlurmSettings, job_devices, load_settings
from tests.conftest import REPO
from tests.reliability.helpers import as_at_a_terminal

TINY = dict(arch="cifar", width=0.125, dataset="synthetic", batch_size=50, lr=0.05, momentum=0.9, head="fc",
            image_size=16, train_size=100, test_size=50)  # fmt: skip


def test_flags_win_over_the_file_and_take_yaml_values(tmp_path):
    config = tmp_path / "slurm.yaml"
    config.write_text("timeout_min: 120\npartition: gpu\nsetup: [module load cuda]\n")
    settings = load_settings(["partition=debug", "additional_parameters={qos: high}", "mem_gb=1.5"], config)
    assert settings.timeout_min == 120 and settings.partition == "debug" and settings.mem_gb == 1.5
    assert settings.additional_parameters == {"qos": "high"} and settings.setup == ["module load cuda"]
    assert load_settings() == SlurmSettings()


@pytest.mark.parametrize(
    ("pairs", "words"),
    [
        (["timeout_min=0"], ["timeout_min", "greater than or equal to 1"]),
        (["array_parallelism=-1"], ["array_parallelism", "greater than or equal to 1"]),
        (["timeout_min=soon"], ["timeout_min", "integer"]),
        (["walltime=5"], ["walltime", "timeout_min, partition"]),
        (["timeout_min"], ["--slurm 'timeout_min'", "KEY=VALUE"]),
    ],
)
def test_bad_settings_are_one_line(pairs, words):
    with pytest.raises(InputError) as caught:
        load_settings(pairs)
    message = str(caught.value)
    assert "\n" not in message and all(word in message for word in words), message


def test_a_config_file_that_is_not_a_mapping_is_refused(tmp_path):
    config = tmp_path / "slurm.yaml"
    config.write_text("- timeout_min\n")
    with pytest.raises(InputError, match="expected a mapping"):
        load_settings([], config)


def test_devices_are_what_each_job_sees():
    none = SlurmSettings()
    assert job_devices("auto", none) == [torch.device("cpu")]
    assert job_devices("auto", SlurmSettings(gpus_per_node=2)) == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert job_devices("cuda", none) == [torch.device("cuda", 0)]
    # A list packs runs into one job; Slurm numbers the granted GPUs from 0.
    assert job_devices("cuda:2,cuda:3", none) == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert job_devices("cpu,cpu", none) == [torch.device("cpu"), torch.device("cpu")]
    for bad in ("tpu", "cuda:0,cuda:0", ","):
        with pytest.raises(InputError, match="--device"):
            job_devices(bad, none)


@pytest.mark.parametrize(
    ("state", "down", "lost"),
    [
        (JobState("RUNNING", "None", "n1"), set(), None),
        (JobState("PENDING", "Resources", ""), set(), None),
        (JobState("PENDING", "BeginTime", ""), set(), None),  # a requeued job waiting for its restart
        (JobState("COMPLETING", "None", "n1"), set(), None),
        (JobState("RUNNING", "None", "n1"), {"n1"}, "NODE_FAIL"),
        (JobState("CANCELLED", "None", "n1"), set(), "CANCELLED"),
        (JobState("OUT_OF_MEMORY", "None", "n1"), set(), "OUT_OF_MEMORY"),
        (JobState("TIMEOUT", "None", "n1"), set(), "TIMEOUT"),
        (JobState("PENDING", "NodeDown", ""), set(), "NODE_FAIL"),
        (None, set(), "UNKNOWN"),
    ],
)
def test_when_a_job_without_a_result_is_lost(state, down, lost):
    found = slurm._lost(state, down)
    assert (found is None) if lost is None else found.startswith(lost)


def test_a_lost_job_result_names_the_state_and_is_trained_again(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm, "_job_details", lambda job: {"Reason": "None"})
    grid = GridDir(tmp_path / "g")
    variant = Variant(**TINY, epochs=1)
    context = type("Context", (), {"tuned": ()})()
    result = slurm._write_lost(grid, variant, "7_3", "OUT_OF_MEMORY", context)
    assert result["status"] == "failed" and "Slurm job 7_3 ended OUT_OF_MEMORY: out of memory" in result["error"]
    assert json.loads(grid.result_path(variant.id).read_text())["slurm"]["state"] == "OUT_OF_MEMORY"
    other = Variant(**TINY, epochs=1, seed=1)  # a failure the training itself raised stays final
    grid.run_dir(other.id).mkdir(parents=True)
    grid.result_path(other.id).write_text(json.dumps({"status": "failed", "error": "ValueError: x"}))
    book = slurm.JobBook(grid.root / slurm.SLURM_DIR)
    book.jobs = {variant.id: "7_3", other.id: "7_4"}
    book.save()
    assert grid.is_lost_job(variant.id) and not grid.is_lost_job(other.id)
    # Finished, but not settled: no pick or look is made over the stand-in; the training's own failure is an outcome.
    assert grid.is_finished(variant.id) and not grid.is_settled(variant.id) and grid.is_settled(other.id)
    assert slurm.forget_lost(grid) == [variant.id]
    assert not grid.is_finished(variant.id) and grid.is_finished(other.id)
    # The next run submits the lost variant afresh: its cancelled job, perhaps still completing, is not collected.
    assert slurm.JobBook(grid.root / slurm.SLURM_DIR).jobs == {other.id: "7_4"}


def test_a_requested_stop_ends_training_after_the_epoch_in_flight_with_its_checkpoint(tmp_path):
    variant = Variant(**TINY, epochs=3)
    run_dir = tmp_path / variant.id
    train.request_stop()
    with pytest.raises(train.StopAfterEpoch):
        train.train(variant, run_dir, device="cpu", progress=False)
    assert not train.stop_requested()  # answered once
    assert store.load_checkpoint(run_dir / layout.CHECKPOINT_FILE, variant.id)["epoch"] == 1
    assert not (run_dir / layout.RESULT_FILE).exists()
    resumed = train.train(variant, run_dir, device="cpu", progress=False)
    uninterrupted = train.train(variant, tmp_path / "again", device="cpu", progress=False)
    assert resumed["epochs_done"] == 3 and resumed["test_acc"] == uninterrupted["test_acc"]



SUBMIT_STOPPED = """
import json, os, signal, sys
from pathlib import Path
from nin.variant import Variant
from runners import slurm

class Job:  # what submitit's map_array returns
    def __init__(self, index):
        self.job_id = f"7_{index}"

class Executor:
    def map_array(self, task, configs):
        os.kill(os.getpid(), int(sys.argv[3]))  # sbatch has answered; jobs.json is not yet written
        return [Job(i) for i in range(len(configs))]

variants = [Variant(**json.loads(sys.argv[2]), seed=seed) for seed in (0, 1)]
slurm._submit(Executor(), None, variants, 1, slurm.Limits(10, 10), slurm.JobBook(Path(sys.argv[1])))
print("went on")
"""


@pytest.mark.parametrize("stop", sorted(slurm.STOP_SIGNALS), ids=lambda s: signal.Signals(s).name)
def test_a_runner_stopped_as_sbatch_answers_records_the_jobs_then_stops(tmp_path, stop):
    """Ctrl-C, `kill` or a closed SSH session right after sbatch answered: the runner stops, but only once jobs.json
    names the submitted jobs, so that the next run collects them instead of submitting their variants again."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", SUBMIT_STOPPED, str(tmp_path), json.dumps(TINY), str(int(stop))],
                          env=env, capture_output=True, text=True, timeout=120,
                          preexec_fn=as_at_a_terminal)  # fmt: skip
    assert done.returncode != 0 and "went on" not in done.stdout, done.stderr
    expected = {Variant(**TINY, seed=seed).id: f"7_{seed}" for seed in (0, 1)}
    assert json.loads((tmp_path / slurm.JOBS_FILE).read_text()) == expected
