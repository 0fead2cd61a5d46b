"""The results directory OUT/<grid>/, the one contract between training and reporting. Imports no torch.

    OUT/<grid>/spec.yaml                       the grid as resolved, with every variant id it expands to
    OUT/<grid>/runs/<variant_id>/result.json   written once, atomically, when the variant ends
    OUT/<grid>/runs/<variant_id>/metrics.jsonl one line per finished epoch
    OUT/<grid>/runs/<variant_id>/checkpoint.pt the last finished epoch, for resume
    OUT/<grid>/runs/<variant_id>/cam.npz       class maps of 8 fixed test images (variants with a canvas)
    OUT/<grid>/tuning.json                     a grid with `tune:`: every candidate's validation scores, the picks
    OUT/<grid>/tuning/runs/<variant_id>/       its tuning runs (the same files as runs/), never read into a report
    OUT/<grid>/looks.json                      a grid grown by `run --until-resolved`: its design and every look
    OUT/<grid>/report/                         tables, plots, report.html

Training (nin.store, nin.train, nin.results), the runners and the reports all take names, paths, result keys and the
metrics reader from here, so that the two sides of the contract cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPEC_FILE = "spec.yaml"
RUNS_DIR = "runs"
REPORT_DIR = "report"
RESULT_FILE = "result.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
CAM_FILE = "cam.npz"
TUNING_FILE = "tuning.json"
LOOKS_FILE = "looks.json"  # the sequence of `run --until-resolved` (judge.sequential is its schema)
TUNING_DIR = "tuning"  # a GridDir of its own: tuning runs resume and go stale exactly as the grid's runs do
# In a failed result.json: the cluster job that was lost before the run could end (its id, state, reason). Such a
# result stands in for the run until the next `run` trains it again; it is not an outcome.
LOST_JOB_KEY = "slurm"


@dataclass(frozen=True)
class GridDir:
    """Paths of one grid's results directory."""

    root: Path  # OUT/<grid>

    @property
    def spec_path(self) -> Path:
        return self.root / SPEC_FILE

    @property
    def runs(self) -> Path:
        return self.root / RUNS_DIR

    @property
    def report(self) -> Path:
        return self.root / REPORT_DIR

    @property
    def tuning(self) -> GridDir:
        """Where a grid with `tune:` trains its tuning runs (tuning/runs/<id>/): outside runs/, so that the report,
        which reads runs/ only, never counts them."""
        return GridDir(self.root / TUNING_DIR)

    @property
    def tuning_path(self) -> Path:
        return self.root / TUNING_FILE

    @property
    def looks_path(self) -> Path:
        return self.root / LOOKS_FILE

    def run_dir(self, variant_id: str) -> Path:
        return self.runs / variant_id

    def result_path(self, variant_id: str) -> Path:
        return self.run_dir(variant_id) / RESULT_FILE

    def metrics_path(self, variant_id: str) -> Path:
        return self.run_dir(variant_id) / METRICS_FILE

    def checkpoint_path(self, variant_id: str) -> Path:
        return self.run_dir(variant_id) / CHECKPOINT_FILE

    def cam_path(self, variant_id: str) -> Path:
        return self.run_dir(variant_id) / CAM_FILE

    def is_finished(self, variant_id: str) -> bool:
        """Whether the variant has a result.json: an outcome, or the stand-in of a lost job."""
        return self.result_path(variant_id).is_file()

    def is_lost_job(self, variant_id: str) -> bool:
        """Whether the variant's result.json is the stand-in of a cluster job that was lost (it has LOST_JOB_KEY)."""
        try:
            return bool(read_result(self.result_path(variant_id)).get(LOST_JOB_KEY))
        except (OSError, ValueError):
            return False

    def is_settled(self, variant_id: str) -> bool:
        """Whether the variant has its outcome: a result.json that no later run replaces. What is picked or judged
        over (a tuning pick, a look of --until-resolved) waits for this, not for is_finished."""
        return self.is_finished(variant_id) and not self.is_lost_job(variant_id)

    def has_checkpoint(self, variant_id: str) -> bool:
        return self.checkpoint_path(variant_id).is_file()

    def run_ids(self) -> list[str]:
        """Every run directory, finished or not."""
        if not self.runs.is_dir():
            return []
        return sorted(p.name for p in self.runs.iterdir() if p.is_dir())

    def finished_ids(self) -> list[str]:
        """Run directories holding a result.json."""
        return [run_id for run_id in self.run_ids() if self.is_finished(run_id)]

    def stale_runs(self, variant_ids: set[str] | list[str]) -> list[str]:
        """Run directories of an earlier version of the grid (their config, hence their id, changed): kept on disk,
        listed, never mixed into this grid's report."""
        wanted = set(variant_ids)
        return [run_id for run_id in self.run_ids() if run_id not in wanted]


# ---- result.json ------------------------------------------------------------------------------------------------
# Every key of result.json is either a Variant field (configuration) or one of these outcomes. Reports read the
# configuration from the data (any key not listed here), so they work on results written by older versions; a new
# measured number is registered here once and every table treats it as an outcome.
TEXT_OUTCOME_KEYS = (
    "variant_id", "group_id", "status", "error", "traceback", "device", "device_name", "precision",
    "started", "finished",
    "peak_source",  # where peak_flops came from: "measured" (a CPU's GEMM probe) or "datasheet" (a GPU's)
    "cam_method", "cam_resolution",  # the class maps' method (cam, gradcam) and native size ("8x8"), with a canvas
    "stop_reason", "lr_drop_epochs",  # ENDING_KEYS' text: the drop epochs as a list in result.json
)  # fmt: skip
# With a `validation` hold-out (and only then): the final epoch's val_acc and val_loss, the 1-based epoch of the highest
# val_acc (the earliest on a tie), the test accuracy of that epoch, and the held-out image count.
VALIDATION_OUTCOME_KEYS = ("val_acc", "val_loss", "best_val_epoch", "test_acc_at_best_val", "n_val")
# How training ended (nin.results.ending), for every run: why it stopped ("criterion", "cap" or "epochs"; null when it
# diverged or failed first), how many times and after which epochs the rate dropped (result.json holds the epochs as a
# list; a report shows them as text, e.g. "7 12"), and the training images it took.
ENDING_KEYS = ("stop_reason", "lr_drops", "lr_drop_epochs", "train_images")
NUMERIC_OUTCOME_KEYS = (
    "params", "trainable_params", "trunk_params", "head_params", "macs", "flops", "epochs_done",
    "train_acc", "test_acc", "train_loss", "test_loss", "gap_acc", "gap_loss", "running_train_acc",
    "running_train_loss", "best_test_acc", "n_train", "n_test", "train_seconds", "images_per_s", "mfu",
    "peak_flops",  # the dense peak FLOP/s mfu is measured against
    # With a canvas (nin.cam): pointing-game hit rate, its chance level (mean box share), the positive map mass in the
    # box, each in [0, 1]; and the seconds the maps and measures took.
    "loc_pointing", "loc_pointing_chance", "loc_energy", "cam_seconds",
    "lr_drops", "train_images",  # ENDING_KEYS' numbers
    "load_avg_max", "cpu_count",  # how busy the machine was (nin.results.machine_load)
    *VALIDATION_OUTCOME_KEYS,
)  # fmt: skip
# Mappings: reports flatten `versions` into version_<name> columns, and `tuned` (a grid with `tune:`: the settings
# picked on validation for the run's arm, e.g. {"lr": 0.002}) into tuned_<name> columns that are part of the
# treatment, never a setting to pair or label on.
NESTED_OUTCOME_KEYS = ("versions", "tuned")
OUTCOME_KEYS = (*TEXT_OUTCOME_KEYS, *NUMERIC_OUTCOME_KEYS, *NESTED_OUTCOME_KEYS)
# Outcomes that differ between two runs of one variant on one machine (clock, throughput, where it ran): every
# equal-results comparison (resume, executors, clusters) leaves these out.
TIMING_KEYS = (
    "train_seconds", "images_per_s", "mfu", "peak_flops", "peak_source", "cam_seconds", "started", "finished",
    "device", "device_name", "load_avg_max", "cpu_count",
)  # fmt: skip
METRICS_TIMING_KEYS = ("epoch_seconds", "images_per_s", "load_avg")  # the same, per metrics.jsonl line


def read_result(path: Path) -> dict[str, Any]:
    """A result.json as a dict; raises ValueError (or OSError) for a file that is not one JSON object."""
    return _read_object(path)


def read_tuning(path: Path) -> dict[str, Any]:
    """OUT/<grid>/tuning.json (runners.tuning.record is its schema) as a dict; raises ValueError (or OSError) for a
    file that is not one JSON object. The report reads the picks and every candidate's scores from it."""
    return _read_object(path)


def read_looks(path: Path) -> dict[str, Any]:
    """OUT/<grid>/looks.json as a dict (its shape: judge.looks.Sequence, which reads it through here); raises
    ValueError (or OSError) for a file that is not one JSON object."""
    return _read_object(path)


def _read_object(path: Path) -> dict[str, Any]:
    record = json.loads(path.read_text())
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def read_metrics(path: Path, on_bad_line: Callable[[int, str], None] | None = None) -> list[dict[str, Any]]:
    """The epochs of metrics.jsonl in order. A line that is not a JSON object is skipped and passed to
    `on_bad_line(line_number, text)`; without a callback it raises ValueError."""
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            if on_bad_line is None:
                raise ValueError(f"{path}:{number}: not a JSON object line") from None
            on_bad_line(number, line)
            continue
        rows.append(row)
    return rows
