"""Bad data directories: one clear line, exit 2, before any training starts (nothing under the out dir).

The files are tiny copies in the real formats (tests/nin/test_data.py writes them), then damaged the way disks and
half-finished downloads damage them.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from nin.data import clear_cache
from runners.cli import main
from tests.conftest import run_cli
from tests.nin.test_data import make_cifar10, make_mnist, write_idx
from tests.reliability.helpers import QUIET, assert_nothing_written, assert_one_clear_line, results

FIX = ("--data-dir", "--download")
TINY = "arch: cifar, width: 0.125, image_size: 16, batch_size: 32, epochs: 1, lr: 0.05, precision: fp32"


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def grid_for(tmp_path: Path, dataset: str) -> Path:
    spec = tmp_path / "grid.yaml"
    spec.write_text(f"name: data\nsettings: {{{TINY}, dataset: {dataset}}}\naxes: {{head: [gap]}}\n")
    return spec


def truncated_mnist(root: Path) -> tuple[str, tuple[str, ...]]:
    make_mnist(root)
    path = root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    return "fashion-mnist", ("train-images-idx3-ubyte", "truncated")


def truncated_mnist_header(root: Path) -> tuple[str, tuple[str, ...]]:
    make_mnist(root)
    path = root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:3])
    return "fashion-mnist", ("t10k-labels-idx1-ubyte", "truncated")


def wrong_magic_mnist(root: Path) -> tuple[str, tuple[str, ...]]:
    make_mnist(root, "MNIST")
    images = np.zeros((64, 28, 28), dtype=np.uint8)
    write_idx(root / "MNIST" / "raw" / "train-images-idx3-ubyte", 0x0801, images)  # a labels magic on images
    return "mnist", ("train-images-idx3-ubyte", "not an IDX images file")


def cifar_wrong_shape(root: Path) -> tuple[str, tuple[str, ...]]:
    make_cifar10(root)
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps({"data": np.zeros((8, 1000), dtype=np.uint8), "labels": [0] * 8}))
    return "cifar10", ("cifar10", "cifar-10-batches-py")


def cifar_images_without_labels(root: Path) -> tuple[str, tuple[str, ...]]:
    make_cifar10(root)
    batch = root / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({"data": np.zeros((12, 3072), dtype=np.uint8), "labels": [0] * 5}))
    return "cifar10", ("test split has 12 images and 5 labels",)


def cifar_not_a_pickle(root: Path) -> tuple[str, tuple[str, ...]]:
    make_cifar10(root)
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"<html>404 Not Found</html>")
    return "cifar10", ("cifar10", "corrupt")


def empty_directory(root: Path) -> tuple[str, tuple[str, ...]]:
    root.mkdir(parents=True, exist_ok=True)
    return "fashion-mnist", ("data files not found", "train-images-idx3-ubyte")


def empty_cifar_file(root: Path) -> tuple[str, tuple[str, ...]]:
    make_cifar10(root)
    (root / "cifar-10-batches-py" / "batches.meta").write_bytes(b"")
    return "cifar10", ("batches.meta", "empty")


DAMAGE = [
    truncated_mnist,
    truncated_mnist_header,
    wrong_magic_mnist,
    cifar_wrong_shape,
    cifar_images_without_labels,
    cifar_not_a_pickle,
    empty_directory,
    empty_cifar_file,
]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__ for d in DAMAGE])
def test_damaged_data_is_one_line_before_training(tmp_path, capsys, damage):
    data = tmp_path / "data"
    dataset, words = damage(data)
    out = tmp_path / "out"
    code = main(["run", str(grid_for(tmp_path, dataset)), "--out", str(out), "--data-dir", str(data), *QUIET])
    captured = capsys.readouterr()
    assert code == 2
    assert_one_clear_line(captured.err, dataset, *words, *FIX)
    assert captured.out == ""  # not even the "runs to train" line: nothing started
    assert_nothing_written(out)


def test_wrong_shape_cifar_through_the_console_entry_point(tmp_path):
    data = tmp_path / "data"
    dataset, words = cifar_wrong_shape(data)
    out = tmp_path / "out"
    proc = run_cli("run", str(grid_for(tmp_path, dataset)), "--out", str(out), "--data-dir", str(data), *QUIET)
    assert proc.returncode == 2
    assert_one_clear_line(proc.stderr, *words, *FIX)
    assert_nothing_written(out)


def test_the_same_files_undamaged_train(tmp_path, capsys):
    """The control: the checks above refuse damage, not these formats."""
    data = tmp_path / "data"
    make_cifar10(data)
    out = tmp_path / "out"
    spec = grid_for(tmp_path, "cifar10")
    code = main(["train", str(spec), "--variant", "cifar", "--out", str(out), "--data-dir", str(data), *QUIET])
    assert code == 0, capsys.readouterr().err
    (result,) = results(out / "data").values()
    assert result["status"] == "ok" and result["n_train"] == 40 and result["n_test"] == 12
