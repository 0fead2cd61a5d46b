"""Datasets: decoded once into uint8 tensors through torchvision's own classes (batching: nin.pipeline).

`load_dataset` reads torchvision's on-disk layout (`data_dir` is torchvision's `root`), or builds an embedded
dataset (scikit-learn's digits, a synthetic one for tests), and keeps it for the worker's later variants.
"""

from __future__ import annotations

import gzip
import math
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import datasets as tvd

from nin.canvas import place_on_canvas
from nin.catalog import DATASETS, DatasetInfo
from nin.errors import InputError

DEFAULT_DATA_DIR = Path("data")
FIX = "pass --data-dir DIR pointing at torchvision's root, or run with --download on a machine with internet"
MNIST_CLASSES = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST}
IDX_MAGIC = {"images": 0x0803, "labels": 0x0801}  # IDX: 0x08 = unsigned byte, then the number of dimensions
DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED = 0.2, 0
# Canvas positions are drawn from this seed (per split) for every variant and training seed: one set of canvases.
CANVAS_SEED = 0
# The validation hold-out is drawn from this seed for every variant and training seed: one validation set per
# (dataset, fraction), so that paired differences and a tuned value compare arms on the same held-out images.
VALIDATION_SPLIT_SEED = 0
_CACHE_SIZE = 4


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors field by field has no single truth value
class DataTensors:
    name: str
    train_x: torch.Tensor  # uint8 (N, C, H, W), CPU
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: int
    mean: tuple[float, ...]  # per-channel mean of train_x / 255
    std: tuple[float, ...]
    canvas: int | None = None  # images pasted on canvas×canvas black squares (on_canvas); None: as decoded
    train_boxes: torch.Tensor | None = None  # int64 (N, 4): each image's (x0, y0, x1, y1) on its canvas, half-open
    test_boxes: torch.Tensor | None = None
    # with_validation: the fraction of the decoded training split held out as val_x/val_y (train_x keeps the rest,
    # and mean/std are the rest's); None: no hold-out.
    validation: float | None = None
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    val_boxes: torch.Tensor | None = None


# torchvision's CIFAR and SVHN classes compare every file with the md5 of the upstream release. We check presence
# there and validate the decoded arrays (shape, dtype, label range) instead: that catches the corruption that
# matters, accepts re-packed copies, and lets tests read tiny files in the real formats through the real classes.
class _CIFAR10(tvd.CIFAR10):
    def _check_integrity(self) -> bool:
        return all(_is_file(self.root, self.base_folder, f) for f, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        self.meta = {**self.meta, "md5": None}  # check_integrity(path, None) tests presence only
        super()._load_meta()


class _CIFAR100(_CIFAR10, tvd.CIFAR100):
    pass


class _SVHN(tvd.SVHN):
    def _check_integrity(self) -> bool:
        return _is_file(self.root, self.filename)

    def download(self) -> None:
        if not self._check_integrity():  # never replace a file the user put there
            super().download()


TORCHVISION_CLASSES = {**MNIST_CLASSES, "cifar10": _CIFAR10, "cifar100": _CIFAR100, "svhn": _SVHN}


def _is_file(*parts: str | Path) -> bool:
    return os.path.isfile(os.path.join(*parts))


def expected_files(name: str, root: Path) -> list[Path]:
    """The files torchvision reads for `name` under `root`, named from torchvision's own class attributes."""
    cls = TORCHVISION_CLASSES[name]
    if name in MNIST_CLASSES:
        return [root / cls.__name__ / "raw" / Path(f).stem for f, _ in cls.resources]
    if name == "svhn":
        return [root / cls.split_list[split][1] for split in ("train", "test")]
    names = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [root / cls.base_folder / f for f in names]


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def _root(data_dir: str | Path | None) -> Path:
    return Path(DEFAULT_DATA_DIR if data_dir is None else data_dir).expanduser().resolve()


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


@contextmanager
def _translated(name: str, where: Path, download: bool) -> Iterator[None]:
    """torchvision, pickle, gzip and scipy raise many kinds of errors on bad files: the user gets one line."""
    try:
        yield
    except (InputError, MemoryError):
        raise
    except Exception as exc:
        doing = "download or read" if download else "read"
        raise InputError(
            f"{name}: could not {doing} {where} ({_one_line(exc)}); the files are missing, corrupt or not in "
            f"torchvision's format: {FIX}"
        ) from exc


def _idx_header(path: Path) -> tuple[int, list[int], int]:
    """(magic, dims, file size or -1 for .gz) of an IDX file, as MNIST ships them."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4:
            return -1, [], 0
        nd = head[3]
        dims = f.read(4 * nd)
    if len(dims) < 4 * nd:
        return -1, [], 0
    size = -1 if path.suffix == ".gz" else path.stat().st_size
    return int.from_bytes(head, "big"), [int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(nd)], size


def _check_mnist(name: str, files: list[Path], native: int) -> None:
    counts = []
    for path in files:
        kind = "images" if "images" in path.name else "labels"
        with _translated(name, path, download=False):
            magic, dims, size = _idx_header(path)
        if magic == -1:
            raise InputError(f"{name}: {path} is truncated (shorter than its IDX header); {FIX}")
        if magic != IDX_MAGIC[kind]:
            # A compressed file under the uncompressed name is the usual cause; say so.
            gzipped = f" (it is gzip-compressed: name it {path.name}.gz)" if magic >> 16 == 0x1F8B else ""
            raise InputError(
                f"{name}: {path} is not an IDX {kind} file (magic 0x{magic:08x}, expected "
                f"0x{IDX_MAGIC[kind]:08x}){gzipped}; {FIX}"
            )
        if kind == "images" and dims[1:] != [native, native]:
            raise InputError(f"{name}: {path} holds {dims[1:]} images, expected {native}x{native}; {FIX}")
        expected = 4 + 4 * len(dims) + math.prod(dims)
        if size not in (-1, expected):
            raise InputError(f"{name}: {path} is truncated or damaged: {size} bytes, its header says {expected}; {FIX}")
        counts.append(dims[0])
    for split, (n_images, n_labels) in (("train", counts[0:2]), ("test", counts[2:4])):
        if n_images != n_labels:
            raise InputError(f"{name}: the {split} files hold {n_images} images but {n_labels} labels; {FIX}")


def _present(name: str, root: Path) -> list[Path]:
    """Each expected file (or, for MNIST, its .gz); one InputError line naming every missing one."""
    found, missing = [], []
    for path in expected_files(name, root):
        gz = path.with_name(path.name + ".gz")
        if path.is_file():
            found.append(path)
        elif name in MNIST_CLASSES and gz.is_file():
            found.append(gz)
        else:
            missing.append(path)
    if missing:
        suffix = "(.gz)" if name in MNIST_CLASSES else ""
        listed = ", ".join([f"{missing[0]}{suffix}"] + [f"{p.name}{suffix}" for p in missing[1:]])
        raise InputError(f"{name}: data files not found: expected {listed}; {FIX}")
    return found


def check_dataset(name: str, data_dir: str | Path | None = None) -> None:
    """Fast presence and format check (headers only, nothing decoded or written); raises InputError."""
    info = _info(name)
    if info.embedded:
        return
    root = _root(data_dir)
    files = _present(name, root)
    if name in MNIST_CLASSES:
        _check_mnist(name, files, info.native_size)
    for path in files:
        if path.stat().st_size == 0:
            raise InputError(f"{name}: {path} is empty; {FIX}")
    if name == "svhn":
        import scipy.io

        for path in files:
            with _translated(name, path, download=False):
                shapes = {var: shape for var, shape, _ in scipy.io.whosmat(path)}
            x, y = shapes.get("X"), shapes.get("y")
            if x is None or y is None or x[:3] != (32, 32, 3) or y[0] != x[3]:
                raise InputError(f"{name}: {path} should hold X (32, 32, 3, N) and y (N, 1), not X {x}, y {y}; {FIX}")


def _gunzip(name: str, root: Path) -> None:
    """torchvision's MNIST reads the uncompressed files; unpack the .gz copies next to them, atomically."""
    for path in expected_files(name, root):
        gz = path.with_name(path.name + ".gz")
        if not path.is_file() and gz.is_file():
            tmp = path.with_name(path.name + ".partial")
            with _translated(name, gz, download=False):
                with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
                    dst.write(src.read())
                os.replace(tmp, path)


def _decode_torchvision(name: str, root: Path, download: bool) -> tuple[torch.Tensor, ...]:
    if name in MNIST_CLASSES:
        _gunzip(name, root)
    if not download:
        check_dataset(name, root)
    elif not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
    cls = TORCHVISION_CLASSES[name]
    out: list[torch.Tensor] = []
    with _translated(name, expected_files(name, root)[0].parent, download):
        for train in (True, False):
            if name in MNIST_CLASSES:
                ds = cls(str(root), train=train, download=download)
                x, y = ds.data.unsqueeze(1), ds.targets
            elif name == "svhn":
                ds = cls(str(root), split="train" if train else "test", download=download)
                x, y = torch.from_numpy(np.ascontiguousarray(ds.data)), torch.from_numpy(ds.labels)
            else:
                ds = cls(str(root), train=train, download=download)
                x, y = torch.from_numpy(ds.data).permute(0, 3, 1, 2), torch.as_tensor(ds.targets)
            out += [x.contiguous(), y.reshape(-1).long()]
    return tuple(out)


def _decode_digits() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.from_numpy(np.rint(bunch.images * (255 / 16)).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    # A fixed split, independent of any variant's seed: every run is scored on the same test images.
    train, test = train_test_split(
        np.arange(len(y)), test_size=DIGITS_TEST_FRACTION, stratify=bunch.target, random_state=DIGITS_SPLIT_SEED
    )
    train, test = torch.from_numpy(np.sort(train)), torch.from_numpy(np.sort(test))
    return x[train], y[train], x[test], y[test]


def _decode_synthetic() -> tuple[torch.Tensor, ...]:
    """Learnable in a few steps: each class is a smooth random pattern, each image that pattern plus noise."""
    info = DATASETS["synthetic"]
    g = torch.Generator().manual_seed(0)
    patterns = torch.rand(info.classes, info.channels, 4, 4, generator=g)
    patterns = F.interpolate(patterns, size=info.native_size, mode="bilinear", align_corners=False)
    n_train = info.train_images
    n = n_train + info.test_images
    y = (torch.arange(n) % info.classes)[torch.randperm(n, generator=g)]
    noise = torch.rand(n, info.channels, info.native_size, info.native_size, generator=g)
    x = ((0.6 * patterns[y] + 0.4 * noise) * 255).round().to(torch.uint8)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std of x / 255 from a 256-bin histogram: no float copy of the dataset."""
    levels = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).double()
        mean = float((counts * levels).sum() / counts.sum())
        means.append(mean)
        stds.append(float(((counts * (levels - mean) ** 2).sum() / counts.sum()).sqrt()))
    return tuple(means), tuple(stds)


def _validated(info: DatasetInfo, where: Path | str, tensors: tuple[torch.Tensor, ...]) -> DataTensors:
    shape = (info.channels, info.native_size, info.native_size)
    for split, x, y in (("train", *tensors[0:2]), ("test", *tensors[2:4])):
        problem = None
        if x.dtype != torch.uint8 or x.dim() != 4 or tuple(x.shape[1:]) != shape:
            problem = f"{split} images are {x.dtype} {tuple(x.shape)}, expected uint8 (N, {', '.join(map(str, shape))})"
        elif len(x) == 0 or len(x) != len(y):
            problem = f"the {split} split has {len(x)} images and {len(y)} labels"
        elif int(y.min()) < 0 or int(y.max()) >= info.classes:
            problem = f"{split} labels span {int(y.min())}..{int(y.max())}, expected 0..{info.classes - 1}"
        if problem:
            raise InputError(f"{info.name}: {where}: {problem}; {FIX}")
    mean, std = _channel_stats(tensors[0])
    return DataTensors(info.name, *tensors, classes=info.classes, mean=mean, std=std)


_CACHE: OrderedDict[tuple[str, str], DataTensors] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = False) -> DataTensors:
    """Decode a dataset into uint8 CPU tensors, once per (name, root) in this process; raises InputError."""
    info = _info(name)
    root = _root(data_dir)
    key = (name, "" if info.embedded else str(root))
    with _CACHE_LOCK:  # held while decoding: concurrent callers wait for one decode instead of doing their own
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        if name == "digits":
            data = _validated(info, "scikit-learn digits", _decode_digits())
        elif name == "synthetic":
            data = _validated(info, "synthetic", _decode_synthetic())
        else:
            data = _validated(info, root, _decode_torchvision(name, root, download))
        _CACHE[key] = data
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return data


# Canvas copies of each decoded dataset, keyed by the decoded object (held by _CACHE) and the canvas size: a copy
# lives as long as its source and different canvas sizes never share one.
_CANVAS_CACHE: weakref.WeakKeyDictionary[DataTensors, dict[int, DataTensors]] = weakref.WeakKeyDictionary()


def on_canvas(data: DataTensors, canvas: int) -> DataTensors:
    """`data` with every image pasted at a fixed random position on a canvas×canvas black square, its boxes kept,
    and the normalisation statistics of the canvas images (what the net sees). Once per (dataset, canvas) in this
    process; positions come from CANVAS_SEED and the split only (nin.canvas), so every variant and seed agrees."""
    if data.canvas is not None:
        if data.canvas == canvas:
            return data
        raise ValueError(f"{data.name} is already on a {data.canvas} px canvas")
    if data.validation is not None:  # positions are drawn per index of the full split: place first, then hold out
        raise ValueError(f"{data.name} holds out validation images: place it on the canvas first")
    with _CACHE_LOCK:
        copies = _CANVAS_CACHE.setdefault(data, {})
        if canvas not in copies:
            train_x, train_boxes = place_on_canvas(data.train_x, canvas, CANVAS_SEED, "train")
            test_x, test_boxes = place_on_canvas(data.test_x, canvas, CANVAS_SEED, "test")
            mean, std = _channel_stats(train_x)
            copies[canvas] = DataTensors(
                data.name, train_x, data.train_y, test_x, data.test_y, data.classes, mean, std,
                canvas=canvas, train_boxes=train_boxes, test_boxes=test_boxes,
            )  # fmt: skip
        return copies[canvas]


def stratified_quota(y: torch.Tensor, size: int, classes: int) -> torch.Tensor:
    """Images per class in a stratified pick of `size` of the labels y: class shares as in y, the images left over
    after flooring go to the largest remainders (the lower class on a tie). int64 (classes,), summing to size."""
    counts = torch.bincount(y, minlength=classes).double()
    exact = counts * size / max(len(y), 1)
    quota = exact.floor().long()
    by_remainder = sorted(range(classes), key=lambda c: (-float(exact[c] - quota[c]), c))
    for c in by_remainder[: size - int(quota.sum())]:
        quota[c] += 1
    return quota


def held_out_count(n_images: int, fraction: float) -> int:
    """How many of a split's n_images a validation fraction holds out: the nearest whole number (halves up)."""
    return math.floor(fraction * n_images + 0.5)


def validation_split(
    y: torch.Tensor, classes: int, fraction: float, name: str = "the dataset"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held out): sorted indices into the training labels y. Stratified (stratified_quota of
    held_out_count images), each class's held-out images drawn at random from VALIDATION_SPLIT_SEED alone, so every
    variant and seed holds out the same images. Raises InputError if a class would be empty on either side."""
    if not 0 < fraction < 1:
        raise InputError(f"validation must be a fraction between 0 and 1 (exclusive), got {fraction!r}")
    quota = stratified_quota(y, held_out_count(len(y), fraction), classes)
    counts = torch.bincount(y, minlength=classes)
    for c in range(classes):
        held, total = int(quota[c]), int(counts[c])
        if held == 0 or held == total:
            side, fix = ("validation", "raise it") if held == 0 else ("training", "lower it")
            raise InputError(
                f"validation={fraction:g} leaves class {c} of {name} without {side} images ({total} training "
                f"images, {held} held out): {fix}, or use a dataset with more images per class"
            )
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(VALIDATION_SPLIT_SEED))
    shuffled = y[order]
    held_out = torch.cat([order[shuffled == c][: int(quota[c])] for c in range(classes)]).sort().values
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[held_out] = False
    return torch.nonzero(keep).flatten(), held_out


# Hold-out copies of each (decoded or canvas) dataset, keyed as the canvas copies are.
_VALIDATION_CACHE: weakref.WeakKeyDictionary[DataTensors, dict[float, DataTensors]] = weakref.WeakKeyDictionary()


def with_validation(data: DataTensors, fraction: float) -> DataTensors:
    """`data` with validation_split's held-out images moved from train_* to val_*, and the normalisation statistics
    of the images left for training (the held-out ones must not shape the inputs). Once per (dataset, fraction)
    in this process; raises InputError for a fraction that leaves a class empty on either side."""
    if data.validation is not None:
        if data.validation == fraction:
            return data
        raise ValueError(f"{data.name} already holds out validation={data.validation:g}")
    with _CACHE_LOCK:
        copies = _VALIDATION_CACHE.setdefault(data, {})
        if fraction not in copies:
            kept, held = validation_split(data.train_y, data.classes, fraction, data.name)
            boxes = data.train_boxes
            mean, std = _channel_stats(data.train_x[kept])
            copies[fraction] = replace(
                data,
                train_x=data.train_x[kept],
                train_y=data.train_y[kept],
                train_boxes=boxes[kept] if boxes is not None else None,
                mean=mean,
                std=std,
                validation=fraction,
                val_x=data.train_x[held],
                val_y=data.train_y[held],
                val_boxes=boxes[held] if boxes is not None else None,
            )
        return copies[fraction]


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
        _CANVAS_CACHE.clear()
        _VALIDATION_CACHE.clear()
