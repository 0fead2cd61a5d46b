"""A grid's wall time from one measured bench result, scaled to every variant by its FLOPs.

    python -m bench.estimate ablations/paper.yaml BENCH.json [--devices N]

BENCH.json is the output of `nin-ablate bench --json`. Per variant v (docs/BENCHMARKS.md has the derivation):

    r_train(v) = r_train(bench) * F(bench) / F(v)        r_eval(v) = r_eval(bench) * F(bench) / F(v)
    T(v) = fixed + epochs * (n_train / r_train(v) + n_test / r_eval(v)) + evals_of_train * n_train / r_eval(v)
    T(grid) = dataset_first_load + tracker_first_start + sum_v T(v) / devices

Scaling by FLOPs assumes compute-bound steps: it is close for the d2l-sized nets on one device and optimistic for
nets too small to fill it. Checkpoint writes (one per epoch) are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nin.errors import InputError
from nin.profile import profile_variant

# (train, test) images of each dataset's standard split; train_size/test_size in a grid override them.
SPLIT_SIZES = {
    "fashion-mnist": (60_000, 10_000),
    "mnist": (60_000, 10_000),
    "cifar10": (50_000, 10_000),
    "cifar100": (50_000, 10_000),
    "svhn": (73_257, 26_032),
    "digits": (1_437, 360),
    "synthetic": (500, 100),
}


def train_set_evals(epochs: int, every: int) -> int:
    """Eval-mode passes over the training set: every `every` epochs, and always after the last."""
    return len({e for e in range(1, epochs + 1) if (every and e % every == 0) or e == epochs})


def estimate_grid(spec: str | Path, bench: dict[str, Any], devices: int = 1) -> dict[str, Any]:
    from runners.spec import load_grid

    grid = load_grid(spec, max_runs=None)
    flops_bench = bench["flops_per_image"]
    fixed = bench["fixed_cost_s"]
    rows, total = [], 0.0
    for v in grid.variants:
        scale = flops_bench / profile_variant(v).flops
        r_train, r_eval = bench["harness_images_per_s"] * scale, bench["eval_images_per_s"] * scale
        n_train, n_test = SPLIT_SIZES[v.dataset]
        n_train, n_test = v.train_size or n_train, v.test_size or n_test
        seconds = (
            fixed["per_variant"]
            + v.epochs * (n_train / r_train + n_test / r_eval)
            + train_set_evals(v.epochs, v.eval_train_every) * n_train / r_eval
        )
        rows.append({"variant_id": v.id, "train_images_per_s": r_train, "seconds": seconds})
        total += seconds
    once_per_worker = fixed["dataset_first_load"] + fixed.get("tracker_first_start", 0.0)
    wall = once_per_worker + total / devices
    return {"grid": grid.name, "runs": len(rows), "devices": devices, "wall_seconds": wall, "runs_detail": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.estimate", description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="grid file, e.g. ablations/paper.yaml")
    parser.add_argument("bench_json", help="output of 'nin-ablate bench --json'")
    parser.add_argument("--devices", type=int, default=1, help="devices training in parallel (default 1)")
    args = parser.parse_args(argv)
    try:
        bench = json.loads(Path(args.bench_json).read_text())
        result = estimate_grid(args.spec, bench, args.devices)
    except (OSError, ValueError, KeyError, InputError) as exc:
        print(f"bench.estimate: error: {exc}", file=sys.stderr)
        return 2
    on = f"{bench['device']} ({bench['device_name']}), {bench['precision']}"
    print(
        f"grid '{result['grid']}': {result['runs']} runs on {args.devices} x {on}: estimated wall time "
        f"{result['wall_seconds'] / 60:.1f} min ({result['wall_seconds'] / 3600:.2f} h)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
