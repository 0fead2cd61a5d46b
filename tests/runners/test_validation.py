"""The grid-level `validation` hold-out: ids, the split, normalisation, per-epoch val metrics, result keys, resume,
bad values through the CLI, and the estimate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from nin import layout
from nin.data import (
    VALIDATION_SPLIT_SEED,
    held_out_count,
    load_dataset,
    on_canvas,
    validation_split,
    with_validation,
)
from nin.errors import InputError
from nin.pipeline import DeviceData
from nin.results import validation_outcomes
from nin.train import train
from nin.variant import Variant
from runners.cli import main
from runners.overrides import parse_overrides
from runners.spec import load_grid, parse_grid
from tests.conftest import REPO
from tests.nin.test_train import _StopAfter
from tests.reliability.helpers import QUIET, assert_nothing_written, assert_one_clear_line, without_timing

# Computed at commit 9462d26, before `validation` existed: a grid without it must keep every id, or each finished
# run of each existing grid would turn stale. (grid file, its first id, its last id) The quick and cam grids as they
# were before they used `schedule: plateau` (tests/grids/) keep them through the plateau keys too.
GRID_IDS_BEFORE_VALIDATION = [
    ("tests/grids/quick_10_epochs.yaml", 70, "d2l-gap-linear-cccp0-do1-w0.125-s0-34f45f",
     "alexnet-do1-w0.125-s4-565e93"),
    ("tests/grids/cam_8_epochs.yaml", 15, "cifar-gap-linear-cccp2-do0-w0.125-s0-a26cc9",
     "cifar-alexnet-cccp2-do0-w0.125-s4-e1fd47"),
    ("ablations/paper.yaml", 57, "d2l-gap-cccp0-do1-s0-be8a56", "alexnet-do1-s2-e2a56e"),
]  # fmt: skip
TINY_RELIABILITY = dict(
    arch="cifar", width=0.125, dataset="synthetic", image_size=16, train_size=200, test_size=50, batch_size=50,
    epochs=3, lr=0.05, momentum=0.9, precision="fp32", cccp=1,
)  # fmt: skip
TINY_RELIABILITY_ID = "cifar-gap-cccp1-do1-w0.125-s0-147b60"  # the same commit
# A tiny trained variant: synthetic (500 train images, 50 per class) at 16 px, 120 of the 400 left trained on.
TINY = dict(
    arch="cifar", width=0.125, dataset="synthetic", image_size=16, batch_size=40, lr=0.05, momentum=0.9,
    head="fc", precision="fp32", validation=0.2, train_size=120, test_size=60,
)  # fmt: skip
SETTINGS = (
    "{arch: cifar, width: 0.125, dataset: synthetic, image_size: 16, train_size: 100, test_size: 50, "
    "batch_size: 50, epochs: 2, lr: 0.05, momentum: 0.9, precision: fp32}"
)
GRID = f"name: val\nsettings: {SETTINGS}\naxes: {{cccp: [0, 2]}}\nseeds: [0, 1]\n"


# ---- ids --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,runs,first,last", GRID_IDS_BEFORE_VALIDATION)
def test_grids_without_validation_keep_their_ids(name: str, runs: int, first: str, last: str) -> None:
    variants = load_grid(REPO / name, max_runs=None).variants
    assert (len(variants), variants[0].id, variants[-1].id) == (runs, first, last)
    assert all(v.validation is None and "validation" not in v.config() for v in variants)


def test_a_variant_without_validation_keeps_its_id_and_one_with_it_gets_another() -> None:
    plain = Variant(**TINY_RELIABILITY)
    assert plain.id == TINY_RELIABILITY_ID
    held = Variant(**TINY_RELIABILITY, validation=0.1)
    assert held.config()["validation"] == 0.1 and held.id != plain.id and held.slug == plain.slug


def test_the_grid_key_reaches_every_row_and_spec_yaml() -> None:
    text = GRID + "include: [{head: fc}]\nvalidation: 0.1\n"
    grid = parse_grid(text)
    plain = parse_grid(GRID + "include: [{head: fc}]\n")
    assert len(grid.variants) == 6 and {v.validation for v in grid.variants} == {0.1}
    assert not {v.id for v in grid.variants} & {v.id for v in plain.variants}
    assert grid.resolved()["validation"] == 0.1
    # --set validation=F replaces the file's value for every row, and spec.yaml records the value run.
    overridden = parse_grid(text, overrides=parse_overrides(["validation=0.25"]))
    assert {v.validation for v in overridden.variants} == {0.25} and overridden.resolved()["validation"] == 0.25
    assert {v.validation for v in parse_grid(GRID, overrides=parse_overrides(["validation=0.2"])).variants} == {0.2}


# ---- the split --------------------------------------------------------------------------------------------------


def test_the_split_is_stratified_disjoint_and_fixed() -> None:
    data = load_dataset("digits")
    y = data.train_y
    kept, held = validation_split(y, data.classes, 0.1)
    assert len(held) == held_out_count(len(y), 0.1) == 144
    assert len(set(kept.tolist()) | set(held.tolist())) == len(y) and not set(kept.tolist()) & set(held.tolist())
    counts, held_counts = torch.bincount(y, minlength=10), torch.bincount(y[held], minlength=10)
    # Every class keeps its share: within one image of 10% of its training images.
    assert ((held_counts - counts * 0.1).abs() < 1).all() and (held_counts > 0).all()
    again = validation_split(y, data.classes, 0.1)
    assert torch.equal(again[1], held) and torch.equal(again[0], kept)
    # Drawn from the fixed split seed, not the first images of each class in file order.
    first_per_class = torch.cat([torch.nonzero(y == c).flatten()[: int(held_counts[c])] for c in range(10)])
    assert set(first_per_class.tolist()) != set(held.tolist())
    assert VALIDATION_SPLIT_SEED == 0


def test_every_variant_and_seed_holds_out_the_same_images_and_trains_on_none_of_them() -> None:
    data = load_dataset("digits")
    base = dict(arch="cifar", width=0.125, dataset="digits", image_size=16, validation=0.1)
    pipelines = [
        DeviceData.from_variant(data, "cpu", Variant(**base, **changes))
        for changes in ({}, {"seed": 3}, {"head": "fc", "lr": 0.01}, {"train_size": 500}, {"canvas": 12})
    ]
    split = with_validation(data, 0.1)
    for pipe in pipelines:
        assert pipe.n_val == 144
        assert torch.equal(pipe._y["val"], split.val_y)
        if pipe.canvas is None:
            assert torch.equal(pipe._x["val"], split.val_x)
    # The canvas copy holds out the same images (same labels, the same positions the full split gave them).
    canvas_split = with_validation(on_canvas(data, 12), 0.1)
    assert torch.equal(canvas_split.val_y, split.val_y)
    assert torch.equal(
        canvas_split.val_boxes, on_canvas(data, 12).train_boxes[validation_split(data.train_y, 10, 0.1)[1]]
    )
    # train_size subsets what remains: every image trained on is a kept one, none a held-out one.
    kept, held = validation_split(data.train_y, 10, 0.1)
    subset = pipelines[3]
    assert subset.n_train == 500 and pipelines[0].n_train == len(kept) == 1437 - 144
    flat = data.train_x.flatten(1)
    index_of = {bytes(row.numpy()): i for i, row in enumerate(flat)}
    trained = {index_of[bytes(row.numpy())] for row in subset._x["train"].flatten(1)}
    assert trained <= set(kept.tolist()) and not trained & set(held.tolist())


def test_normalisation_statistics_come_from_the_training_part_only() -> None:
    data = load_dataset("digits")
    split = with_validation(data, 0.3)
    assert split.mean != data.mean and split.std != data.std
    pipe = DeviceData(split, "cpu", image_size=8)  # native size: no resize, so the inputs are the normalised pixels
    x = torch.cat([batch for batch, _ in pipe.eval_batches("train", 512)])
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std(correction=0)) - 1) < 1e-5
    # The full split's statistics centre the full split, not the part trained on: they would leak the hold-out.
    x_full = torch.cat([b for b, _ in DeviceData(data, "cpu", image_size=8).eval_batches("train", 512)])
    assert abs(float(x_full.mean())) < 1e-5
    assert abs(float(x_full[validation_split(data.train_y, 10, 0.3)[0]].mean())) > 1e-4


@pytest.mark.parametrize("fraction,side", [(0.001, "without validation"), (0.9995, "without training")])
def test_a_split_that_empties_a_class_is_an_input_error(fraction: float, side: str) -> None:
    data = load_dataset("digits")
    with pytest.raises(InputError, match=side):
        with_validation(data, fraction)


# ---- training ---------------------------------------------------------------------------------------------------


def read_metrics(run_dir: Path) -> list[dict]:
    return layout.read_metrics(run_dir / layout.METRICS_FILE)


def test_each_epoch_logs_val_metrics_and_the_result_chooses_on_them(tmp_path: Path) -> None:
    variant = Variant(**TINY, epochs=3)
    logged: list[dict] = []

    class Tracker:
        def start(self, variant, profile, resumed):
            pass

        def log_epoch(self, metrics):
            logged.append(dict(metrics))

        def finish(self, result, cam_file=None):
            pass

    result = train(variant, tmp_path / variant.id, device="cpu", progress=False, tracker=Tracker())
    rows = read_metrics(tmp_path / variant.id)
    assert len(rows) == 3 and all({"val_acc", "val_loss"} <= set(row) for row in rows)
    assert [row["val_acc"] for row in logged] == [row["val_acc"] for row in rows]  # what W&B gets
    assert result["n_train"] == 120 and result["n_val"] == 100 and result["n_test"] == 60
    assert result["val_acc"] == rows[-1]["val_acc"] and result["val_loss"] == rows[-1]["val_loss"]
    best = max(rows, key=lambda row: (row["val_acc"], -row["epoch"]))
    assert result["best_val_epoch"] == best["epoch"]
    assert result["test_acc_at_best_val"] == best["test_acc"]
    assert result["test_acc"] == rows[-1]["test_acc"]  # the verdicts' number stays the final epoch's
    # The val numbers are the test set's eval pass over the held-out images with the trained net.
    assert 0 <= result["val_acc"] <= 1 and math.isfinite(result["val_loss"])
    assert set(layout.VALIDATION_OUTCOME_KEYS) <= set(result)
    assert set(result) <= {*layout.OUTCOME_KEYS, *Variant.model_fields}


def test_without_validation_no_val_keys_are_written(tmp_path: Path) -> None:
    variant = Variant(**{**TINY, "validation": None}, epochs=1)
    result = train(variant, tmp_path / variant.id, device="cpu", progress=False)
    assert not set(layout.VALIDATION_OUTCOME_KEYS) & set(result)
    assert not {"val_acc", "val_loss"} & set(read_metrics(tmp_path / variant.id)[0])
    assert result["n_train"] == 120


def test_best_val_epoch_is_the_earliest_of_equal_highs() -> None:
    history = [
        {"epoch": 1, "val_acc": 0.5, "val_loss": 1.0, "test_acc": 0.4},
        {"epoch": 2, "val_acc": 0.7, "val_loss": 0.8, "test_acc": 0.61},
        {"epoch": 3, "val_acc": 0.7, "val_loss": 0.7, "test_acc": 0.66},
        {"epoch": 4, "val_acc": 0.6, "val_loss": 0.9, "test_acc": 0.69},
    ]
    outcomes = validation_outcomes(history, 100)
    assert outcomes == {
        "val_acc": 0.6, "val_loss": 0.9, "best_val_epoch": 2, "test_acc_at_best_val": 0.61, "n_val": 100,
    }  # fmt: skip
    assert tuple(outcomes) == layout.VALIDATION_OUTCOME_KEYS
    assert validation_outcomes([], None) == dict.fromkeys(layout.VALIDATION_OUTCOME_KEYS)


def test_a_resumed_run_has_the_same_val_metrics_bit_for_bit(tmp_path: Path) -> None:
    variant = Variant(**TINY, epochs=3, dropout=True, augment=True, schedule="cosine")
    straight = train(variant, tmp_path / "straight", device="cpu", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(variant, tmp_path / "resumed", device="cpu", progress=False, tracker=_StopAfter(2))
    resumed = train(variant, tmp_path / "resumed", device="cpu", progress=False)
    assert [without_timing(r) for r in read_metrics(tmp_path / "resumed")] == [
        without_timing(r) for r in read_metrics(tmp_path / "straight")
    ]
    for key in (*layout.VALIDATION_OUTCOME_KEYS, "test_acc", "n_train"):
        assert resumed[key] == straight[key], key


# ---- through the CLI --------------------------------------------------------------------------------------------


def test_a_grid_with_validation_runs_and_its_results_csv_has_the_new_columns(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "val.yaml"
    spec.write_text(f"name: val\nsettings: {SETTINGS}\naxes: {{cccp: [0]}}\nseeds: [0]\nvalidation: 0.2\n")
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), *QUIET]) == 0
    capsys.readouterr()
    (result,) = [json.loads(p.read_text()) for p in (out / "val" / "runs").glob("*/result.json")]
    assert result["validation"] == 0.2 and result["n_val"] == 100 and result["n_train"] == 100
    runs = pd.read_csv(out / "val" / "report" / "results.csv")
    assert runs.loc[0, "test_acc_at_best_val"] == pytest.approx(result["test_acc_at_best_val"])
    assert runs.loc[0, "best_val_epoch"] == result["best_val_epoch"]


BAD_VALIDATION = [
    ("zero", "validation: 0\n", ("validation", "greater than 0")),
    ("negative", "validation: -0.1\n", ("validation", "greater than 0")),
    ("one", "validation: 1\n", ("validation", "less than 1")),
    ("above-one", "validation: 1.5\n", ("validation", "less than 1")),
    ("text", "validation: '0.1'\n", ("validation", "number")),
    ("bool", "validation: true\n", ("validation",)),
    ("list", "validation: [0.1, 0.2]\n", ("validation", "single value")),
    ("empties-validation-side", "validation: 0.001\n", ("validation", "without validation images")),
    ("empties-training-side", "validation: 0.999\n", ("validation", "without training images")),
    ("in-include", "include: [{head: fc, validation: 0.1}]\n", ("validation", "top-level key")),
]


@pytest.mark.parametrize("extra,words", [pytest.param(e, w, id=i) for i, e, w in BAD_VALIDATION])
def test_bad_validation_values_are_one_line_exit_2_and_nothing_written(tmp_path, capsys, extra, words) -> None:
    spec = tmp_path / "grid.yaml"
    spec.write_text(GRID + extra)
    out = tmp_path / "out"
    code = main(["run", str(spec), "--out", str(out), *QUIET])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    line = assert_one_clear_line(captured.err, *words)
    assert str(spec) in line
    assert_nothing_written(out)


@pytest.mark.parametrize(
    "grid,words",
    [
        (GRID.replace("precision: fp32}", "precision: fp32, validation: 0.1}"), ("settings.validation", "top-level")),
        (GRID.replace("axes: {cccp: [0, 2]}", "axes: {validation: [0.1, 0.2]}"), ("axes.validation", "top-level")),
    ],
    ids=["as-setting", "as-axis"],
)
def test_validation_is_not_a_setting_or_an_axis(tmp_path, capsys, grid: str, words: tuple[str, ...]) -> None:
    spec = tmp_path / "grid.yaml"
    spec.write_text(grid)
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), *QUIET]) == 2
    assert_one_clear_line(capsys.readouterr().err, str(spec), *words)
    assert_nothing_written(out)


@pytest.mark.parametrize(
    "value,words", [("0", ("--set validation=0", "greater than 0")), ("[0.1]", ("validation", "one value"))]
)
def test_bad_validation_override_is_one_line_exit_2(tmp_path, capsys, value: str, words: tuple[str, ...]) -> None:
    spec = tmp_path / "grid.yaml"
    spec.write_text(GRID)
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), "--set", f"validation={value}", *QUIET]) == 2
    assert_one_clear_line(capsys.readouterr().err, *words)
    assert_nothing_written(out)


# ---- the estimate -----------------------------------------------------------------------------------------------


def test_the_estimate_trains_on_what_remains_and_evaluates_the_hold_out_each_epoch() -> None:
    from bench.estimate import estimate_grid
    from nin.profile import profile_variant

    text = "name: e\nsettings: {arch: cifar, width: 0.125, dataset: digits, epochs: 4}\naxes: {head: [gap]}\n"
    plain, held = parse_grid(text).variants[0], parse_grid(text + "validation: 0.1\n").variants[0]
    bench = {
        "flops_per_image": profile_variant(plain).flops,
        "harness_images_per_s": 100.0,
        "eval_images_per_s": 400.0,
        "fixed_cost_s": {"dataset_first_load": 0.0, "per_variant": 0.0},
    }
    (row,) = estimate_grid("e", [held], bench)["runs_detail"]
    # 1437 digits: 144 held out, evaluated each epoch; the end-of-run train-set pass covers the 1293 trained on.
    assert math.isclose(row["seconds"], 4 * (1293 / 100 + (360 + 144) / 400) + 1293 / 400)
