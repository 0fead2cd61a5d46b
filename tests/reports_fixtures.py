"""Results directories with known numbers, written in the contract's layout (DESIGN.md), for the report tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

BASE_CONFIG: dict[str, Any] = {
    "model": "nin", "arch": "d2l", "head": "gap", "cccp": 2, "dropout": True, "width": 1.0, "init": "xavier",
    "dataset": "fashion-mnist", "in_channels": 1, "num_classes": 10, "image_size": 224, "train_size": None,
    "test_size": None, "augment": False, "epochs": 3, "batch_size": 128, "optimizer": "sgd", "lr": 0.1,
    "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "constant", "warmup_epochs": 0,
    "step_size": 10, "gamma": 0.1, "precision": "auto", "channels_last": True, "compile": False,
    "deterministic": False, "eval_train_every": 0, "seed": 0,
}  # fmt: skip
PARAMS = {"gap": 1_992_166, "fc": 2_053_386, "alexnet": 58_105_354, None: 46_764_746}


def group_id(config: dict[str, Any]) -> str:
    if config["model"] == "alexnet":
        return f"alexnet-do{int(config['dropout'])}-lr{config['lr']}"
    return f"{config['arch']}-{config['head']}-cccp{config['cccp']}-do{int(config['dropout'])}-lr{config['lr']}"


def run_id(config: dict[str, Any]) -> str:
    return f"{group_id(config)}-s{config['seed']}"


def result(test_acc: float, train_acc: float, status: str = "ok", **config: Any) -> dict[str, Any]:
    """A complete result.json for these settings (over BASE_CONFIG) and final accuracies."""
    cfg = {**BASE_CONFIG, **config}
    if cfg["model"] == "alexnet":
        cfg.update(arch=None, head=None, cccp=None)
    params = PARAMS[cfg["head"]] - (0 if cfg["cccp"] in (2, None) else 100_000 * (2 - cfg["cccp"]))
    macs = 762_000_000 if cfg["model"] == "nin" else 939_000_000
    return {
        "variant_id": run_id(cfg),
        "group_id": group_id(cfg),
        "status": status,
        "error": None if status == "ok" else f"loss became nan at epoch 2 ({status})",
        **cfg,
        "params": params,
        "macs": macs,
        "flops": 2 * macs,
        "epochs_done": cfg["epochs"],
        "train_acc": train_acc,
        "test_acc": test_acc,
        "train_loss": 1.0 - train_acc,
        "test_loss": 1.0 - test_acc + 0.05,
        "gap_acc": train_acc - test_acc,
        "gap_loss": (1.0 - test_acc + 0.05) - (1.0 - train_acc),
        "running_train_acc": train_acc - 0.01,
        "running_train_loss": 1.01 - train_acc,
        "best_test_acc": test_acc,
        "train_seconds": 12.5,
        "images_per_s": 480.0,
        "mfu": None,
        "device": "cpu",
        "versions": {"torch": "2.14.1", "cuda": None},
        "started": "2025-01-01T00:00:00+00:00",
        "finished": "2025-01-01T00:00:12+00:00",
    }


def write_grid(
    root: Path, name: str, results: list[dict[str, Any]], expected: list[str] | None = None, **spec: Any
) -> Path:
    """OUT/<name>/spec.yaml (listing `expected` run ids, default: every result's) + one run dir per result."""
    grid_dir = root / name
    grid_dir.mkdir(parents=True)
    ids = expected if expected is not None else [r["variant_id"] for r in results]
    # In the file's key order, as the runner writes it: axes keep their order (it orders tables).
    (grid_dir / "spec.yaml").write_text(yaml.safe_dump({"name": name, **spec, "variants": ids}, sort_keys=False))
    for res in results:
        write_run(grid_dir, res)
    return grid_dir


def write_run(grid_dir: Path, res: dict[str, Any]) -> Path:
    run_dir = grid_dir / "runs" / res["variant_id"]
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(json.dumps(res, indent=1))
    lines = []
    for epoch in range(1, res["epochs"] + 1):
        frac = epoch / res["epochs"]
        row = {
            "epoch": epoch,
            "train_loss": 2.3 - frac,
            "train_acc": res["running_train_acc"] * frac,
            "test_loss": 2.3 - frac + 0.05,
            "test_acc": res["test_acc"] * frac,
            "lr": res["lr"],
            "epoch_seconds": 4.0,
            "images_per_s": 480.0,
        }
        if epoch == res["epochs"]:
            row.update(eval_train_acc=res["train_acc"], eval_train_loss=res["train_loss"], gap_acc=res["gap_acc"])
        lines.append(json.dumps(row))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


def paired_runs(
    base: float, diffs: dict[int, float], metric: str = "test_acc", head: str = "fc", **config: Any
) -> list[dict[str, Any]]:
    """Per seed, a GAP run and a `head` run equal in every other setting, whose `metric` differs by diffs[seed]
    (GAP minus the other). metric test_acc: train accuracy follows so that the gap stays 0.05; metric gap_acc:
    test accuracies equal, train accuracies differ."""
    runs = []
    for seed, diff in diffs.items():
        if metric == "test_acc":
            gap_run = result(base + diff, base + diff + 0.05, head="gap", seed=seed, **config)
        else:
            gap_run = result(base, base + 0.05 + diff, head="gap", seed=seed, **config)
        runs += [gap_run, result(base, base + 0.05, head=head, seed=seed, **config)]
    return runs


def without_wall_time(record: dict[str, Any]) -> dict[str, Any]:
    """looks.json without the wall-time claims' numbers: wall seconds differ between any two runs of a variant, and
    those claims hold no sequence open, so every decision is equal without them."""
    from judge.verdicts import WALL_TIME_KEY

    timed = [key for key in record["design"]["family"] if key.startswith(WALL_TIME_KEY)]
    for look in record["looks"]:
        for key in timed:
            look["claims"].pop(key, None)
        look["open"] = [key for key in look["open"] if key not in timed]
    return record
