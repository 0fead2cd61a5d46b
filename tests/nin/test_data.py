"""The data layer: tiny files in the real formats read through torchvision's classes, and the device pipeline."""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import scipy.io
import torch
import torch.nn.functional as F
import torchvision.datasets.mnist as tv_mnist
from torchvision.transforms.v2 import functional as TF

from nin.catalog import DATASETS
from nin.data import DataTensors, check_dataset, clear_cache, load_dataset
from nin.errors import InputError
from nin.pipeline import DeviceData, stratified_subset
from tests.datafiles import make_mnist, write_idx

FIX_WORDS = ("--data-dir", "--download")


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def dump(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def make_cifar10(root: Path, per_batch: int = 8, n_test: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """cifar-10-batches-py as torchvision's CIFAR10 reads it: 5 train batches, a test batch, batches.meta."""
    folder = root / "cifar-10-batches-py"
    data = rng(1).integers(0, 256, (5 * per_batch + n_test, 3072), dtype=np.uint8)
    labels = np.arange(len(data)) % 10
    for i in range(5):
        part = slice(i * per_batch, (i + 1) * per_batch)
        dump(folder / f"data_batch_{i + 1}", {"data": data[part], "labels": labels[part].tolist()})
    dump(folder / "test_batch", {"data": data[5 * per_batch :], "labels": labels[5 * per_batch :].tolist()})
    dump(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    return data.reshape(-1, 3, 32, 32), labels


def make_svhn(root: Path, n_train: int = 20, n_test: int = 10) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """train_32x32.mat / test_32x32.mat: X is (32, 32, 3, N), y is (N, 1) with 10 standing for the digit 0."""
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng(n).integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
    return out


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    return message


# ---------- reading the real formats ----------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name,folder", [("fashion-mnist", "FashionMNIST"), ("mnist", "MNIST")])
def test_mnist_idx_files_read_through_torchvision(tmp_path, monkeypatch, name, folder, gz):
    arrays = make_mnist(tmp_path, folder, gz=gz)
    reads = []
    real_reader = tv_mnist.read_image_file
    monkeypatch.setattr(tv_mnist, "read_image_file", lambda path: reads.append(path) or real_reader(path))
    check_dataset(name, tmp_path)
    data = load_dataset(name, tmp_path)
    assert len(reads) == 2  # torchvision's own IDX reader decoded both splits
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape == (64, 1, 28, 28)
    assert data.test_x.shape == (32, 1, 28, 28) and data.train_y.dtype == torch.int64
    assert np.array_equal(data.train_x[:, 0].numpy(), arrays["train"][0])
    assert np.array_equal(data.test_y.numpy(), arrays["t10k"][1])
    assert data.classes == 10 and data.name == name
    pixels = arrays["train"][0] / 255
    assert data.mean == pytest.approx((pixels.mean(),), abs=1e-12)
    assert data.std == pytest.approx((pixels.std(),), abs=1e-12)
    if gz:  # unpacked next to the .gz files, as torchvision's own download does
        assert (tmp_path / folder / "raw" / "train-images-idx3-ubyte").is_file()


def test_decoded_once_per_name_and_root(tmp_path):
    make_mnist(tmp_path / "a")
    make_mnist(tmp_path / "b")
    first = load_dataset("fashion-mnist", tmp_path / "a")
    assert load_dataset("fashion-mnist", str(tmp_path / "a")) is first
    assert load_dataset("fashion-mnist", tmp_path / "b") is not first


@pytest.mark.parametrize("download", [False, True])
def test_cifar10_pickles_read_through_torchvision(tmp_path, download):
    # download=True finds the files present and must neither fetch nor reject them for their md5.
    images, labels = make_cifar10(tmp_path)
    check_dataset("cifar10", tmp_path)
    data = load_dataset("cifar10", tmp_path, download=download)
    assert data.train_x.shape == (40, 3, 32, 32) and data.test_x.shape == (12, 3, 32, 32)
    assert torch.equal(data.train_x, torch.from_numpy(images[:40]))
    assert torch.equal(data.test_y, torch.from_numpy(labels[40:]).long())
    assert len(data.mean) == 3 and data.mean[0] == pytest.approx(images[:40, 0].mean() / 255)


def test_cifar100_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    x = rng(2).integers(0, 256, (30, 3072), dtype=np.uint8)
    fine = (np.arange(30) * 7 % 100).tolist()
    dump(folder / "train", {"data": x[:20], "fine_labels": fine[:20], "coarse_labels": [0] * 20})
    dump(folder / "test", {"data": x[20:], "fine_labels": fine[20:], "coarse_labels": [0] * 10})
    dump(folder / "meta", {"fine_label_names": [str(i) for i in range(100)]})
    data = load_dataset("cifar100", tmp_path)
    assert data.classes == 100 and data.train_y.tolist() == fine[:20] and data.test_x.shape == (10, 3, 32, 32)


@pytest.mark.parametrize("download", [False, True])
def test_svhn_mat_files_read_through_torchvision(tmp_path, download):
    written = make_svhn(tmp_path)
    check_dataset("svhn", tmp_path)
    data = load_dataset("svhn", tmp_path, download=download)
    x, y = written["train"]
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (10, 3, 32, 32)
    assert torch.equal(data.train_x[3], torch.from_numpy(x[..., 3].transpose(2, 0, 1).copy()))
    assert data.train_y.tolist() == [int(v) % 10 for v in y[:, 0]]  # label 10 is the digit 0


def test_digits_fixed_stratified_split():
    data = load_dataset("digits", data_dir="/nowhere")
    assert data.train_x.shape == (1437, 1, 8, 8) and data.test_x.shape == (360, 1, 8, 8)
    assert data.train_x.dtype == torch.uint8 and int(data.train_x.max()) == 255
    per_class = torch.bincount(data.train_y, minlength=10) + torch.bincount(data.test_y, minlength=10)
    assert torch.all((torch.bincount(data.test_y, minlength=10) - 0.2 * per_class).abs() <= 1)
    clear_cache()
    again = load_dataset("digits")
    assert torch.equal(again.test_x, data.test_x) and torch.equal(again.train_y, data.train_y)


def test_synthetic_is_deterministic_and_learnable():
    info = DATASETS["synthetic"]
    data = load_dataset("synthetic")
    assert data.train_x.shape[1:] == (info.channels, info.native_size, info.native_size)
    assert 200 <= len(data.train_y) <= 1000 and 50 <= len(data.test_y) <= 200
    clear_cache()
    again = load_dataset("synthetic")
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.test_y, data.test_y)
    # A nearest-class-mean classifier from the training images scores well above chance on the test images.
    flat = data.train_x.flatten(1).float()
    centroids = torch.stack([flat[data.train_y == c].mean(0) for c in range(data.classes)])
    predicted = torch.cdist(data.test_x.flatten(1).float(), centroids).argmin(1)
    assert (predicted == data.test_y).float().mean() > 0.8


# ---------- bad input: one line naming the problem and the fix ----------


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist", "cifar10", "cifar100", "svhn"])
@pytest.mark.parametrize("check", [load_dataset, check_dataset])
def test_missing_files_name_the_expected_files_and_the_fix(tmp_path, name, check):
    message = one_line_error(check, name, tmp_path / "empty")
    first = {
        "fashion-mnist": "FashionMNIST/raw/train-images-idx3-ubyte(.gz)",
        "mnist": "MNIST/raw/train-images-idx3-ubyte(.gz)",
        "cifar10": "cifar-10-batches-py/data_batch_1",
        "cifar100": "cifar-100-python/train",
        "svhn": "train_32x32.mat",
    }[name]
    assert str(tmp_path / "empty" / first) in message
    last = {"cifar10": "batches.meta", "cifar100": "meta", "svhn": "test_32x32.mat"}.get(name, "t10k-labels-idx1-ubyte")
    assert last in message and all(word in message for word in FIX_WORDS)


def test_only_the_missing_file_is_named(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / "FashionMNIST/raw/t10k-labels-idx1-ubyte").unlink()
    message = one_line_error(load_dataset, "fashion-mnist", tmp_path)
    assert "t10k-labels-idx1-ubyte" in message and "train-images" not in message


def test_empty_raw_directory(tmp_path):
    (tmp_path / "FashionMNIST" / "raw").mkdir(parents=True)
    assert "not found" in one_line_error(load_dataset, "fashion-mnist", tmp_path)


@pytest.mark.parametrize("check", [load_dataset, check_dataset])
def test_truncated_mnist(tmp_path, check):
    make_mnist(tmp_path)
    images = tmp_path / "FashionMNIST/raw/train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    message = one_line_error(check, "fashion-mnist", tmp_path)
    assert "truncated" in message and str(images) in message


def test_truncated_gz_leaves_no_partial_file(tmp_path):
    make_mnist(tmp_path, gz=True)
    gz = tmp_path / "FashionMNIST/raw/train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:300])
    assert str(gz) in one_line_error(load_dataset, "fashion-mnist", tmp_path)
    assert not (tmp_path / "FashionMNIST/raw/train-images-idx3-ubyte").exists()


@pytest.mark.parametrize("check", [load_dataset, check_dataset])
def test_wrong_magic_mnist(tmp_path, check):
    make_mnist(tmp_path)
    labels = tmp_path / "FashionMNIST/raw/train-labels-idx1-ubyte"
    labels.write_bytes(b"\x1f\x8b\x08\x00" + labels.read_bytes()[4:])
    message = one_line_error(check, "fashion-mnist", tmp_path)
    assert "magic" in message and str(labels) in message
    assert "name it train-labels-idx1-ubyte.gz" in message  # the gzip magic gets a hint


def test_mnist_images_without_labels(tmp_path):
    make_mnist(tmp_path)
    write_idx(tmp_path / "FashionMNIST/raw/t10k-labels-idx1-ubyte", 0x0801, np.zeros(30, np.uint8))
    assert "32 images but 30 labels" in one_line_error(load_dataset, "fashion-mnist", tmp_path)


def test_cifar_pickle_with_wrong_shapes(tmp_path):
    make_cifar10(tmp_path)
    dump(tmp_path / "cifar-10-batches-py/data_batch_3", {"data": np.zeros((8, 1000), np.uint8), "labels": [0] * 8})
    message = one_line_error(load_dataset, "cifar10", tmp_path)
    assert f"cifar10: could not read {tmp_path / 'cifar-10-batches-py'} (ValueError: " in message
    assert "--data-dir" in message


def test_cifar_labels_that_do_not_match_the_images(tmp_path):
    make_cifar10(tmp_path)
    dump(tmp_path / "cifar-10-batches-py/test_batch", {"data": np.zeros((12, 3072), np.uint8), "labels": [0] * 11})
    assert "12 images and 11 labels" in one_line_error(load_dataset, "cifar10", tmp_path)


def test_cifar_garbage_file(tmp_path):
    make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py/batches.meta").write_bytes(b"not a pickle")
    message = one_line_error(load_dataset, "cifar10", tmp_path)
    assert "could not read" in message and "UnpicklingError" in message


def test_svhn_with_the_wrong_arrays(tmp_path):
    make_svhn(tmp_path)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((28, 28, 1, 4), np.uint8), "y": np.ones((4, 1))})
    assert "(32, 32, 3, N)" in one_line_error(load_dataset, "svhn", tmp_path)


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    message = one_line_error(load_dataset, "mnist", tmp_path, download=True)
    assert "could not download" in message and "name resolution" in message


def test_unknown_dataset():
    assert "fashion-mnist" in one_line_error(load_dataset, "imagenet")


# ---------- the device pipeline ----------


@pytest.fixture
def cifar(tmp_path) -> DataTensors:
    make_cifar10(tmp_path)
    return load_dataset("cifar10", tmp_path)


def gather(batches) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*batches)
    return torch.cat(xs), torch.cat(ys)


def test_eval_batches_in_order_normalized_last_partial_kept():
    data = load_dataset("synthetic")
    dd = DeviceData(data, "cpu", image_size=data.train_x.shape[-1])
    batches = list(dd.eval_batches("train", 64))
    assert [len(y) for _, y in batches] == [64] * 7 + [500 - 7 * 64]
    x, y = gather(batches)
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (500, 1, 16, 16)
    assert torch.equal(y, data.train_y)
    assert float(x.mean()) == pytest.approx(0, abs=1e-5) and float(x.std(unbiased=False)) == pytest.approx(1, abs=1e-4)
    assert torch.allclose(x, (data.train_x.float() / 255 - data.mean[0]) / data.std[0], atol=1e-5)
    with pytest.raises(ValueError):
        next(dd.eval_batches("val", 8))


@pytest.mark.parametrize("size", [32, 5])
def test_resize_matches_torchvision(cifar, size):
    # Up and down as torchvision's Resize on a tensor (bilinear, antialias on), then normalized.
    x, _ = next(DeviceData(cifar, "cpu", image_size=size).eval_batches("test", 12))
    raw = TF.resize(cifar.test_x.float(), [size, size], antialias=True)
    mean, std = torch.tensor(cifar.mean).view(1, 3, 1, 1), torch.tensor(cifar.std).view(1, 3, 1, 1)
    assert x.shape == (12, 3, size, size)
    assert torch.allclose(x, (raw / 255 - mean) / std, atol=1e-4)


def test_upsampling_to_224(cifar):
    x, _ = next(DeviceData(cifar, "cpu", image_size=224).train_batches(4, seed=0, epoch=0))
    assert x.shape == (4, 3, 224, 224)


def test_same_seed_and_epoch_give_identical_batches(cifar):
    dd = DeviceData(cifar, "cpu", image_size=32, augment=True)
    first = list(dd.train_batches(16, seed=3, epoch=2))
    again = list(DeviceData(cifar, "cpu", image_size=32, augment=True).train_batches(16, seed=3, epoch=2))
    assert [len(y) for _, y in first] == [16, 16, 8]  # 40 images, last partial batch kept
    assert all(torch.equal(a, b) and torch.equal(ya, yb) for (a, ya), (b, yb) in zip(first, again))
    x, y = gather(first)
    assert sorted(y.tolist()) == sorted(cifar.train_y.tolist())  # a permutation of the whole split
    other_epoch = gather(dd.train_batches(16, seed=3, epoch=3))[1]
    other_seed = gather(dd.train_batches(16, seed=4, epoch=2))[1]
    assert not torch.equal(other_epoch, y) and not torch.equal(other_seed, y)


def test_augmentation_is_a_crop_and_flip_of_each_image(cifar):
    plain = DeviceData(cifar, "cpu", image_size=16)
    aug = DeviceData(cifar, "cpu", image_size=16, augment=True)
    x_plain, y_plain = gather(plain.train_batches(8, seed=0, epoch=0))
    x_aug, y_aug = gather(aug.train_batches(8, seed=0, epoch=0))
    assert torch.equal(y_plain, y_aug) and x_aug.shape == x_plain.shape and aug.pad == 2
    assert not torch.allclose(x_aug, x_plain)
    # Padding is black (0 before normalizing), i.e. -mean/std after.
    black = (-torch.tensor(cifar.mean) / torch.tensor(cifar.std)).view(3, 1, 1)
    for orig, got in zip(x_plain[:6], x_aug[:6]):
        padded = F.pad(orig - black, (2, 2, 2, 2)) + black
        candidates = [
            view
            for dy in range(5)
            for dx in range(5)
            for view in (padded[:, dy : dy + 16, dx : dx + 16], padded[:, dy : dy + 16, dx : dx + 16].flip(2))
        ]
        assert any(torch.allclose(got, c, atol=1e-5) for c in candidates)


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_flag(cifar, channels_last):
    dd = DeviceData(cifar, "cpu", image_size=32, channels_last=channels_last, augment=True)
    for x, _ in (next(dd.train_batches(8, 0, 0)), next(dd.eval_batches("test", 8))):
        assert x.is_contiguous(memory_format=torch.channels_last) is channels_last
        assert x.is_contiguous() is not channels_last


def test_subsets_are_stratified_and_deterministic():
    data = load_dataset("synthetic")
    dd = DeviceData(data, "cpu", image_size=16, train_size=100, test_size=30)
    assert (dd.n_train, dd.n_test) == (100, 30) and dd.batches_per_epoch(32) == 4
    y = gather(dd.eval_batches("train", 64))[1]
    shares = torch.bincount(data.train_y, minlength=10) / len(data.train_y)
    assert torch.all((torch.bincount(y, minlength=10) - 100 * shares).abs() < 1)
    again = DeviceData(data, "cpu", image_size=16, train_size=100, test_size=30)
    assert torch.equal(gather(again.eval_batches("test", 64))[0], gather(dd.eval_batches("test", 64))[0])
    assert "train_size=501" in one_line_error(DeviceData, data, "cpu", 16, train_size=501)


def test_stratified_subset_takes_the_first_images_of_each_class():
    y = torch.tensor([1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 0])  # 9 zeros, 2 ones, 1 two
    picked = stratified_subset(y, 6, classes=3)
    # shares 4.5, 1.0, 0.5: the tie on the remainder goes to the lower class; picks stay in file order
    assert picked.tolist() == [0, 1, 2, 4, 5, 6]
    assert torch.bincount(y[picked], minlength=3).tolist() == [5, 1, 0]
