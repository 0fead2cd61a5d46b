"""What the runner pays per variant besides training, piece by piece, through the same calls it makes.

A worker pays some costs once: the dataset's first load and its first W&B run, which starts wandb's service.
Every variant pays `per_variant`: the cached load, the dataset's copy to the device, the model/optimizer build, the
fvcore profile (cached across the seeds of one architecture: this is the uncached cost), W&B run start and finish
(with the service already running), and the result.json write.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from nin import layout, store
from nin.data import DataTensors, clear_cache, load_dataset
from nin.device import synchronize
from nin.pipeline import DeviceData
from nin.profile import profile_variant
from nin.results import RunOutcome, build_result, now_iso
from nin.tracking import make_tracker
from nin.train import Trainer
from nin.variant import Variant

T = TypeVar("T")
PER_VARIANT_TARGET_S = 2.0
ONCE_PER_WORKER = ("dataset_first_load", "tracker_first_start")


def _timed(device: torch.device, fn: Callable[[], T]) -> tuple[T, float]:
    synchronize(device)
    start = time.perf_counter()
    value = fn()
    synchronize(device)
    return value, time.perf_counter() - start


def measure_fixed_costs(
    variant: Variant, device: torch.device, data_dir: Path, wandb_mode: str = "offline"
) -> tuple[dict[str, float], DataTensors]:
    """Seconds per piece, plus `per_variant` (everything but the first load); also returns the loaded data."""
    costs: dict[str, float] = {}
    clear_cache()
    data, costs["dataset_first_load"] = _timed(device, lambda: load_dataset(variant.dataset, data_dir))
    _, costs["dataset_cached_load"] = _timed(device, lambda: load_dataset(variant.dataset, data_dir))

    def to_device() -> DeviceData:
        return DeviceData.from_variant(data, device, variant)

    device_data, costs["device_data"] = _timed(device, to_device)
    trainer, costs["model_build"] = _timed(device, lambda: Trainer(variant, device))
    profile, costs["profile"] = _timed(device, lambda: profile_variant(variant))
    outcome = RunOutcome(
        "ok", device=device, precision=trainer.precision, started=now_iso(), n_train=device_data.n_train,
        n_test=device_data.n_test,
    )  # fmt: skip
    result = build_result(variant, profile.as_dict(), [], outcome)
    # wandb's service may still be writing when the directory goes: leftovers there are not our concern.
    with tempfile.TemporaryDirectory(prefix="nin-bench-", ignore_cleanup_errors=True) as tmp:
        # A worker's first W&B run also starts wandb's service process; the variants after it reuse the service.
        first, costs["tracker_first_start"] = _timed(device, lambda: _started(wandb_mode, Path(tmp), variant, profile))
        first.finish(result)
        next_variant = variant.model_copy(update={"seed": variant.seed + 1})
        tracker, costs["tracker_start"] = _timed(device, lambda: _started(wandb_mode, Path(tmp), next_variant, profile))
        _, costs["tracker_finish"] = _timed(device, lambda: tracker.finish(result))
        _, costs["result_write"] = _timed(device, lambda: store.write_json(Path(tmp) / layout.RESULT_FILE, result))
    costs["per_variant"] = sum(v for k, v in costs.items() if k not in ONCE_PER_WORKER)
    del trainer, device_data
    return costs, data


def _started(mode: str, directory: Path, variant: Variant, profile: Any):
    tracker = make_tracker(mode, directory, "bench")
    tracker.start(variant, profile.as_dict(), resumed=False)
    return tracker
