"""A grid's wall time from one measured bench result, scaled to every variant by its FLOPs.

    nin-ablate estimate ablations/paper.yaml BENCH.json [--devices N]

BENCH.json is the output of `nin-ablate bench --json`. Per variant v (docs/BENCHMARKS.md has the derivation):

    r_train(v) = r_train(bench) * F(bench) / F(v)        r_eval(v) = r_eval(bench) * F(bench) / F(v)
    T(v) = fixed + epochs * (n_train / r_train(v) + (n_test + n_val) / r_eval(v)) + evals_of_train * n_train / r_eval(v)
    T(grid) = dataset_first_load + tracker_first_start + sum_v T(v) / devices

Scaling by FLOPs assumes compute-bound steps: it is close for the d2l-sized nets on one device and optimistic for
nets too small to fill it. Checkpoint writes (one per epoch) are left out. Under `schedule: plateau` `epochs` is the
cap, so the estimate is an upper bound: the stopping rule ends most runs earlier. The runner parses the grid and
hands the variants over: bench knows nothing of grid files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nin.catalog import DATASETS
from nin.data import held_out_count
from nin.profile import profile_variant
from nin.train import evaluates_train_set
from nin.variant import Variant


def train_set_evals(epochs: int, every: int) -> int:
    """Eval-mode passes over the training set in a run of `epochs` epochs: nin.train's schedule, counted."""
    return sum(evaluates_train_set(epoch, epoch == epochs, every) for epoch in range(1, epochs + 1))


def estimate_grid(name: str, variants: Sequence[Variant], bench: dict[str, Any], devices: int = 1) -> dict[str, Any]:
    """Seconds per variant and the grid's wall time on `devices` workers, from one bench result."""
    flops_bench = bench["flops_per_image"]
    fixed = bench["fixed_cost_s"]
    rows, total = [], 0.0
    for v in variants:
        scale = flops_bench / profile_variant(v).flops
        r_train, r_eval = bench["harness_images_per_s"] * scale, bench["eval_images_per_s"] * scale
        info = DATASETS[v.dataset]
        # A validation hold-out leaves fewer images to train on and adds their eval pass to every epoch.
        n_val = held_out_count(info.train_images, v.validation) if v.validation is not None else 0
        n_train, n_test = v.train_size or info.train_images - n_val, v.test_size or info.test_images
        seconds = (
            fixed["per_variant"]
            + v.epochs * (n_train / r_train + (n_test + n_val) / r_eval)
            + train_set_evals(v.epochs, v.eval_train_every) * n_train / r_eval
        )
        rows.append({"variant_id": v.id, "train_images_per_s": r_train, "seconds": seconds})
        total += seconds
    once_per_worker = fixed["dataset_first_load"] + fixed.get("tracker_first_start", 0.0)
    wall = once_per_worker + total / devices
    return {"grid": name, "runs": len(rows), "devices": devices, "wall_seconds": wall, "runs_detail": rows}


def describe(result: dict[str, Any], bench: dict[str, Any]) -> str:
    """One line: the grid, the device it was measured on, and the estimate."""
    on = f"{bench['device']} ({bench['device_name']}), {bench['precision']}"
    return (
        f"grid '{result['grid']}': {result['runs']} runs on {result['devices']} x {on}: estimated wall time "
        f"{result['wall_seconds'] / 60:.1f} min ({result['wall_seconds'] / 3600:.2f} h)"
    )
