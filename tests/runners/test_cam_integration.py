"""The canvas setting end to end: ids, placement, boxes, the loc_* outcomes through nin.train, cam.npz, the report's
class-map figure (without torch) and the bad-input cases through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nin.canvas import place_on_canvas
from nin.data import CANVAS_SEED, load_dataset, on_canvas
from nin.layout import (
    CAM_FILE,
    METRICS_FILE,
    NUMERIC_OUTCOME_KEYS,
    TEXT_OUTCOME_KEYS,
    TIMING_KEYS,
    GridDir,
    read_metrics,
    read_result,
)
from nin.pipeline import DeviceData
from nin.variant import Variant
from tests.conftest import REPO, cli

# Ids computed with nin/variant.py as of commit a35e67c (before the canvas field existed): a variant without a
# canvas must keep them, or every finished run of every existing grid would turn stale.
IDS_BEFORE_CANVAS = {
    "d2l-gap-cccp2-do1-s0-d1f53b": {},
    "cifar-gap-linear-cccp2-do1-w0.25-s1-337be4": dict(
        arch="cifar", width=0.25, image_size=16, dataset="digits", init="kaiming", gap_relu=False, epochs=8,
        batch_size=32, lr=0.02, momentum=0.9, weight_decay=0.0005, schedule="cosine", seed=1,
    ),
    "alexnet-do1-w0.125-s0-d97f21": dict(model="alexnet", width=0.125, image_size=72, dataset="digits", lr=0.01),
    "d2l-fc-cccp2-do1-s3-ea6599": dict(head="fc", dataset="mnist", seed=3),
}  # fmt: skip
# A tiny canvas run: digits (8 px) on 12 px canvases, resized to the cifar arch's 16 px (GAP maps 4×4).
TINY = dict(
    arch="cifar", width=0.125, image_size=16, dataset="digits", canvas=12, epochs=1, batch_size=64,
    optimizer="adamw", lr=0.002, train_size=120, test_size=40,
)  # fmt: skip


@pytest.mark.parametrize("expected", list(IDS_BEFORE_CANVAS))
def test_ids_without_canvas_are_unchanged(expected: str) -> None:
    variant = Variant(**IDS_BEFORE_CANVAS[expected])
    assert variant.id == expected
    assert "canvas" not in variant.config()
    with_canvas = Variant(**IDS_BEFORE_CANVAS[expected], canvas=64)
    assert with_canvas.config()["canvas"] == 64 and with_canvas.id != expected


def _variant(**changes) -> Variant:
    return Variant(**{**TINY, **changes})


def test_placement_is_the_same_for_every_variant_and_seed() -> None:
    data = load_dataset("digits")
    pipelines = [
        DeviceData.from_variant(data, "cpu", _variant(**changes))
        for changes in ({}, {"seed": 3}, {"head": "fc", "lr": 0.01}, {"model": "alexnet", "image_size": 72})
    ]
    first = pipelines[0]
    for other in pipelines[1:]:
        assert torch.equal(other._x["test"], first._x["test"]) and torch.equal(other._x["train"], first._x["train"])
        # In canvas pixels (the AlexNet row's input is larger, so its boxes are scaled further).
        in_canvas = other.boxes["test"] * 12 / other.image_size
        assert torch.allclose(in_canvas, first.boxes["test"] * 12 / 16)
    assert on_canvas(data, 12) is on_canvas(data, 12)  # placed once per process
    assert on_canvas(data, 13).canvas == 13  # the cache tells canvas sizes apart
    # The canvases hold each image, unchanged, in its box, and nothing outside it.
    placed = on_canvas(data, 12)
    for i in (0, 7, 200):
        x0, y0, x1, y1 = placed.test_boxes[i].tolist()
        assert torch.equal(placed.test_x[i, :, y0:y1, x0:x1], data.test_x[i])
        assert int(placed.test_x[i].sum()) == int(data.test_x[i].sum())
    # The subset is taken after placement: a test_size run sees the full split's canvases of its images.
    whole = DeviceData.from_variant(data, "cpu", _variant(test_size=None))
    assert torch.equal(whole.boxes["test"][:10], DeviceData.from_variant(data, "cpu", _variant()).boxes["test"][:10])
    # Positions come from the fixed seed and the split, as nin.canvas draws them.
    expected = place_on_canvas(data.train_x, 12, CANVAS_SEED, "train")[1]
    assert torch.equal(placed.train_boxes, expected)


def test_normalisation_statistics_are_those_of_the_canvas_images() -> None:
    data = load_dataset("digits")
    placed = on_canvas(data, 12)
    pixels = placed.train_x.double() / 255
    assert placed.mean[0] == pytest.approx(float(pixels.mean()), abs=1e-9)
    assert placed.std[0] == pytest.approx(float(pixels.std(unbiased=False)), abs=1e-9)
    assert placed.mean[0] < data.mean[0]  # the black margin darkens the average image


def test_boxes_scale_with_the_resize() -> None:
    data = load_dataset("digits")
    at16, at32 = (DeviceData.from_variant(data, "cpu", _variant(image_size=s, test_size=None)) for s in (16, 32))
    canvas_boxes = on_canvas(data, 12).test_boxes[:40].float()
    assert torch.allclose(at16.boxes["test"][:40], canvas_boxes * 16 / 12)
    assert torch.allclose(at32.boxes["test"][:40], canvas_boxes * 32 / 12)
    # In the resized images the digit's ink lies inside its scaled box (bilinear blur: one pixel of margin).
    _, raw, _ = at32.images("test", torch.arange(40))
    for image, (x0, y0, x1, y1) in zip(raw, at32.boxes["test"][:40].tolist()):
        outside = image[0].clone()
        outside[max(0, int(y0) - 1) : int(np.ceil(y1)) + 1, max(0, int(x0) - 1) : int(np.ceil(x1)) + 1] = 0
        assert float(outside.abs().max()) < 1e-3
        assert float(image.sum()) > 0


@pytest.fixture(scope="module")
def canvas_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Variant, dict]:
    """A one-run results directory trained through nin.train with a canvas."""
    from nin.train import train

    root = tmp_path_factory.mktemp("out") / "tiny"
    variant = _variant()
    result = train(variant, GridDir(root).run_dir(variant.id), device="cpu", progress=False, log=lambda *_: None)
    return root, variant, result


def test_a_canvas_run_measures_localisation(canvas_grid) -> None:
    root, variant, result = canvas_grid
    assert result["status"] == "ok"
    assert read_result(GridDir(root).result_path(variant.id)) == json.loads(json.dumps(result))
    for key in ("loc_pointing", "loc_energy", "loc_pointing_chance"):
        assert key in NUMERIC_OUTCOME_KEYS and key not in TIMING_KEYS
        assert 0.0 <= result[key] <= 1.0, key
    # Every digit covers (8/12)² of its canvas: the chance score of a random pointer.
    assert result["loc_pointing_chance"] == pytest.approx((8 / 12) ** 2, rel=1e-6)
    assert result["cam_method"] == "cam" and result["cam_resolution"] == "4x4"
    assert {"cam_method", "cam_resolution"} <= set(TEXT_OUTCOME_KEYS) and "cam_seconds" in TIMING_KEYS
    # The class maps' time is kept apart from training's: train_seconds is the epochs' own seconds summed.
    assert result["cam_seconds"] > 0
    epochs = read_metrics(GridDir(root).run_dir(variant.id) / METRICS_FILE)
    assert result["train_seconds"] == pytest.approx(sum(row["epoch_seconds"] for row in epochs), rel=1e-9)


def test_cam_npz_holds_the_first_eight_test_images_as_the_net_saw_them(canvas_grid) -> None:
    root, variant, result = canvas_grid
    with np.load(GridDir(root).cam_path(variant.id), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    data = DeviceData.from_variant(load_dataset("digits"), "cpu", variant)
    _, raw, labels = data.images("test", torch.arange(8))
    assert arrays["images"].dtype == np.uint8 and arrays["images"].shape == (8, 1, 16, 16)
    assert np.array_equal(arrays["images"], raw.round().to(torch.uint8).numpy())
    assert np.array_equal(arrays["classes"], labels.numpy())
    assert np.allclose(arrays["boxes"], data.boxes["test"][:8].numpy())
    assert arrays["maps"].shape == (8, 16, 16) and np.isfinite(arrays["maps"].astype(np.float32)).all()
    assert arrays["predicted"].shape == (8,) and ((arrays["probability"] > 0) & (arrays["probability"] <= 1)).all()
    assert str(arrays["method"]) == "cam" and arrays["cam_resolution"].tolist() == [4, 4]


def test_a_resume_after_the_last_epoch_writes_cam_npz_and_the_same_measures(canvas_grid, tmp_path: Path) -> None:
    import shutil

    from nin.train import train

    root, variant, result = canvas_grid
    run_dir = tmp_path / variant.id
    shutil.copytree(GridDir(root).run_dir(variant.id), run_dir)
    (run_dir / "result.json").unlink()
    (run_dir / CAM_FILE).unlink()
    again = train(variant, run_dir, device="cpu", progress=False, log=lambda *_: None)
    assert (run_dir / CAM_FILE).is_file()
    for key in ("loc_pointing", "loc_energy", "loc_pointing_chance", "cam_resolution", "test_acc"):
        assert again[key] == result[key], key


def test_without_canvas_the_localisation_keys_are_null() -> None:
    from nin.results import LOCALISATION_KEYS, RunOutcome, build_result

    profile = dict.fromkeys(("params", "trainable_params", "trunk_params", "head_params", "macs", "flops"), 0)
    result = build_result(Variant(dataset="digits", arch="cifar"), profile, [], RunOutcome("ok", train_seconds=1.0))
    assert all(result[key] is None for key in LOCALISATION_KEYS)


def test_the_report_draws_the_class_maps_without_torch(canvas_grid) -> None:
    root, variant, _ = canvas_grid
    code = (
        "import sys\nfrom reports import write_report\nreport = write_report(sys.argv[1])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\nprint(report.plots['cam'])"
    )
    done = subprocess.run([sys.executable, "-c", code, str(root)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    png = Path(done.stdout.strip())
    assert png == root / "report" / "plots" / "cam.png" and png.read_bytes()[:4] == b"\x89PNG"
    page = (root / "report" / "report.html").read_text()
    assert page.index("<h2>Class maps</h2>") < page.index("<h2>Summary per variant")
    assert "alt='cam'" in page and "not measured (no canvas)" not in page.split("<h2>Class maps</h2>")[1][:300]


def test_a_row_image_for_the_variants_wandb_run(canvas_grid) -> None:
    from reports.cam_figure import row_image

    root, variant, _ = canvas_grid
    image = row_image(GridDir(root).cam_path(variant.id), variant.id)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[1] > 4 * image.shape[0]  # one row of 8 cells: wide, not tall
    assert image.std() > 10  # drawn, not blank


GRID_TEXT = """name: badcanvas
settings: {arch: cifar, width: 0.125, image_size: 16, dataset: digits, epochs: 1, canvas: CANVAS}
axes:
  head: [gap, fc]
"""


@pytest.mark.parametrize(
    ("canvas", "override", "words"),
    [
        ("20", "canvas=0", ("--set canvas=0", "positive integer")),
        ("20", "canvas=-12", ("--set canvas=-12", "positive integer")),
        ("20", "canvas=abc", ("--set canvas=abc", "positive integer")),
        ("20", "canvas=24.5", ("--set canvas=24.5", "positive integer")),
        ("20", "canvas=8", ("--set canvas=8", "not larger than the images (8×8 px)", "at least 9")),
        ("20", "dataset=mnist", ("canvas 20 is not larger than the images (28×28 px)", "at least 29")),
        ("0", None, ("grid.yaml:2", "positive integer")),
        ("true", None, ("grid.yaml:2", "positive integer")),
        ("4", None, ("grid.yaml:2", "not larger than the images (8×8 px)")),
    ],
)
def test_bad_canvas_is_one_line_exit_2_nothing_written(tmp_path: Path, canvas, override, words) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID_TEXT.replace("CANVAS", canvas))
    out = tmp_path / "out"
    args = ["run", str(grid), "--out", str(out), "--device", "cpu", "--wandb", "disabled", "--no-progress"]
    done = cli(*args, *(["--set", override] if override else []))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not out.exists()


def test_the_cam_grid_runs_on_mnist_files(tmp_path: Path) -> None:
    """ablations/cam.yaml itself, as the README tells a user with MNIST files: every head measures localisation."""
    from tests.datafiles import make_mnist

    make_mnist(tmp_path / "data", "MNIST")  # torchvision's raw layout: MNIST/raw/*-idx?-ubyte
    out = tmp_path / "out"
    sets = ("dataset=mnist", "canvas=40", "epochs=3", "warmup_epochs=1", "seeds=1")  # short: 1 warm-up epoch of 3
    args = ["run", "ablations/cam.yaml", *(f"--set={s}" for s in sets), "--data-dir", str(tmp_path / "data")]
    done = cli(*args, "--out", str(out), "--wandb", "disabled", "--device", "cpu", "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    grid = GridDir(out / "cam")
    results = [read_result(grid.result_path(run_id)) for run_id in grid.finished_ids()]
    assert sorted(r["head"] for r in results) == ["alexnet", "fc", "gap"]
    for result in results:
        run = result["variant_id"]
        assert result["status"] == "ok" and result["dataset"] == "mnist" and result["canvas"] == 40, run
        for key in ("loc_pointing", "loc_energy", "loc_pointing_chance"):
            assert 0.0 <= result[key] <= 1.0, (run, key)
        # Every 28 px image covers (28/40)² of its 40 px canvas.
        assert result["loc_pointing_chance"] == pytest.approx((28 / 40) ** 2, rel=1e-6)
