"""Screen a training recipe on the rows of a grid that fit last, on training behaviour alone (docs/EVIDENCE.md, "The
quick grid under the stopping rule"): one JSON line per run with how it ended and its running training accuracy per
epoch. The settings are the grid file's own, changed only by `--set`, so a screen tests the recipe the grid ships.

    python -m bench.recipe_screen ablations/quick.yaml --set warmup_epochs=4 --seeds 0-19 --where head=gap cccp=2

Run one process per core (split the seeds) and compare training accuracies, never test accuracies or verdicts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml


def _seeds(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recipe_screen", description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", help="grid file, e.g. ablations/quick.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a shared setting to change")
    parser.add_argument("--seeds", default="0-4", help="seeds to train, e.g. 0-19 or 3 (default 0-4)")
    parser.add_argument("--where", nargs="*", default=[], metavar="KEY=VALUE", help="rows to keep, e.g. head=gap")
    parser.add_argument("--out", help="run directories (default: a temporary folder)")
    args = parser.parse_args(argv)

    from nin.errors import InputError
    from nin.layout import METRICS_FILE, read_metrics
    from nin.train import train
    from runners.overrides import parse_overrides
    from runners.spec import load_grid

    try:
        grid = load_grid(args.spec, overrides=parse_overrides(args.set))
        where = {key: yaml.safe_load(value) for key, value in (pair.split("=", 1) for pair in args.where)}
        seeds = _seeds(args.seeds)
    except (InputError, ValueError) as exc:
        print(f"recipe_screen: {exc}", file=sys.stderr)
        return 2
    rows = {v.group_id: v for v in grid.variants if all(getattr(v, k, None) == x for k, x in where.items())}
    if not rows:
        print(f"recipe_screen: no row of {args.spec} has {args.where}", file=sys.stderr)
        return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="recipe-screen-"))
    for seed in seeds:
        for row in rows.values():
            variant = type(row).model_validate({**row.config(), "seed": seed})  # the id follows the seed
            started = time.perf_counter()
            # One thread per process, as the demo trains; the dataset is decoded once per process (nin.data caches it).
            result = train(variant, out / variant.id, device="cpu", progress=False, log=lambda *_: None, threads=1)
            epochs = read_metrics(out / variant.id / METRICS_FILE)
            print(json.dumps({
                "variant": variant.id, "seed": seed, "stop": result["stop_reason"], "epochs": result["epochs_done"],
                "lr_drop_epochs": result["lr_drop_epochs"], "train_acc": round(result["train_acc"], 4),
                "seconds": round(time.perf_counter() - started, 1),
                "running_train_acc": [round(e["train_acc"], 3) for e in epochs if "train_acc" in e],
            }), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
