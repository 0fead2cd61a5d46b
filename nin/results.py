"""result.json: what a run of one variant reports, whatever its status (ok, diverged, failed)."""

from __future__ import annotations

import math
import os
import platform
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from nin._timm import timm
from nin.device import device_name, model_flops_utilization, peak_flops
from nin.layout import METRICS_FILE, read_metrics
from nin.profile import profile_variant
from nin.variant import Variant

# Measured on the class maps of variants with a canvas (nin.cam.measure_localisation); null without one.
LOCALISATION_KEYS = ("loc_pointing", "loc_energy", "loc_pointing_chance", "cam_method", "cam_resolution", "cam_seconds")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str | None]:
    import torchvision

    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def validation_outcomes(history: list[dict[str, Any]], n_val: int | None) -> dict[str, Any]:
    """result.json's nin.layout.VALIDATION_OUTCOME_KEYS from the epochs' val_acc/val_loss: the final epoch's values,
    and the epoch with the highest val_acc (the earliest on a tie, so a plateau picks where it was first reached)
    with its test_acc. The verdicts keep reading the final epoch; these are for choosing on validation, not test."""
    scored = [row for row in history if row.get("val_acc") is not None]
    last = history[-1] if history else {}
    best = max(scored, key=lambda row: row["val_acc"], default=None)  # max keeps the first of equal values
    return {
        "val_acc": _finite(last.get("val_acc")),
        "val_loss": _finite(last.get("val_loss")),
        "best_val_epoch": best["epoch"] if best else None,
        "test_acc_at_best_val": _finite(best.get("test_acc")) if best else None,
        "n_val": n_val,
    }  # the keys of nin.layout.VALIDATION_OUTCOME_KEYS (a test holds them equal)


@dataclass(frozen=True)
class RunOutcome:
    """How one run went, besides its variant, profile and epochs: what result.json records about it."""

    status: str  # ok, diverged, failed
    error: str | None = None
    error_traceback: str | None = None
    train_seconds: float = 0.0
    best_test_acc: float | None = None
    device: torch.device | None = None
    precision: str | None = None
    started: str = ""
    n_train: int | None = None
    n_test: int | None = None
    n_val: int | None = None
    localisation: Mapping[str, Any] | None = None
    tuned: Mapping[str, Any] | None = None


def ending(history: list[dict[str, Any]], n_train: int | None) -> dict[str, Any]:
    """How training ended, from the epochs' rows (nin.train marks them): why it stopped (nin.plateau's CRITERION,
    CAP or BUDGET; null for a run that diverged or failed first), the 1-based epochs after which the rate dropped,
    and the training images it took (every epoch passes over the whole training split)."""
    drops = [row["epoch"] for row in history if row.get("lr_drop")]
    return {
        "stop_reason": history[-1].get("stop") if history else None,
        "lr_drops": len(drops),
        "lr_drop_epochs": drops,
        "train_images": len(history) * n_train if n_train is not None else None,
    }  # the keys of nin.layout.ENDING_KEYS (a test holds them equal)


def machine_load(history: list[dict[str, Any]]) -> dict[str, Any]:
    """How busy the machine was while the run trained: the highest 1-minute load average at an epoch's end, and the
    cores it had (wall seconds are only comparable between runs that had the machine to themselves)."""
    loads = [row["load_avg"] for row in history if row.get("load_avg") is not None]
    return {"load_avg_max": max(loads) if loads else None, "cpu_count": os.cpu_count()}


def build_result(
    variant: Variant, profile: dict[str, Any], history: list[dict[str, Any]], outcome: RunOutcome
) -> dict[str, Any]:
    """The result.json of a run, whatever its status (ok, diverged, failed). The validation outcomes are there only
    for a variant with `validation`, and `tuned` (the settings the caller picked for the variant on validation) only
    when given, so that other results keep exactly their keys."""
    o = outcome
    device, precision = o.device, o.precision
    last = history[-1] if history else {}
    evaluated = [row for row in history if "eval_train_acc" in row]
    final_eval = evaluated[-1] if evaluated else {}
    rates = [row["images_per_s"] for row in history if row.get("images_per_s")]
    images_per_s = sum(rates) / len(rates) if rates else None
    # Only a run that measured its speed needs the peak (on a CPU the first one per machine runs the GEMM probe).
    peak = peak_flops(device, precision) if device is not None and precision and images_per_s else None
    return {
        "variant_id": variant.id,
        "group_id": variant.group_id,
        "status": o.status,
        "error": o.error,
        "traceback": o.error_traceback,
        **variant.config(),
        "params": profile["params"],
        "trainable_params": profile["trainable_params"],
        "trunk_params": profile["trunk_params"],
        "head_params": profile["head_params"],
        "macs": profile["macs"],
        "flops": profile["flops"],
        "epochs_done": len(history),
        "train_acc": _finite(final_eval.get("eval_train_acc")),
        "test_acc": _finite(last.get("test_acc")),
        "train_loss": _finite(final_eval.get("eval_train_loss")),
        "test_loss": _finite(last.get("test_loss")),
        "gap_acc": _finite(final_eval.get("gap_acc")),
        "gap_loss": _finite(final_eval.get("gap_loss")),
        "running_train_acc": _finite(last.get("train_acc")),
        "running_train_loss": _finite(last.get("train_loss")),
        "best_test_acc": o.best_test_acc,
        "n_train": o.n_train,
        "n_test": o.n_test,
        "train_seconds": o.train_seconds,
        **ending(history, o.n_train),
        **machine_load(history),
        "images_per_s": images_per_s,
        "mfu": model_flops_utilization(profile["flops"], images_per_s or 0.0, peak.flops if peak else None),
        "peak_flops": peak.flops if peak else None,
        "peak_source": peak.source if peak else None,
        **{key: (o.localisation or {}).get(key) for key in LOCALISATION_KEYS},
        **(validation_outcomes(history, o.n_val) if variant.validation is not None else {}),
        **({"tuned": dict(o.tuned)} if o.tuned else {}),
        "device": str(device) if device is not None else None,
        "device_name": device_name(device) if device is not None else None,
        "precision": precision,
        "versions": versions(),
        "started": o.started,
        "finished": now_iso(),
    }


def failed_result(
    variant: Variant,
    exc: BaseException,
    started: str,
    device: torch.device | None,
    run_dir: Path | None = None,
    tuned: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """result.json of a run that raised: the error, its traceback, and the epochs it had finished."""
    try:
        profile = profile_variant(variant).as_dict()
    except Exception:  # the model itself may be what failed
        profile = dict.fromkeys(("params", "trainable_params", "trunk_params", "head_params", "macs", "flops"))
    history: list[dict[str, Any]] = []
    metrics_path = run_dir / METRICS_FILE if run_dir is not None else None
    if metrics_path is not None and metrics_path.is_file():
        history = read_metrics(metrics_path, on_bad_line=lambda number, text: None)
    message = f"{type(exc).__name__}: {exc}"
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    seconds = sum(row.get("epoch_seconds") or 0.0 for row in history)
    best = max((row["test_acc"] for row in history), default=None)
    outcome = RunOutcome("failed", message, trace, seconds, best, device, started=started, tuned=tuned)
    return build_result(variant, profile, history, outcome)
