"""Fashion-MNIST-shaped data for benchmarks on machines that cannot download the real files.

Random uint8 28×28 images and labels 0..9, 60,000 train / 10,000 test as the real set, written in the IDX format
torchvision's FashionMNIST class reads: loading them goes through exactly the code a real run goes through.
Throughput does not depend on pixel values, so the figures hold for the real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nin.data import IDX_MAGIC, expected_files

FASHION_TRAIN, FASHION_TEST, FASHION_SIZE, FASHION_CLASSES = 60_000, 10_000, 28, 10


def _write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_fashion_like(root: Path, n_train: int = FASHION_TRAIN, n_test: int = FASHION_TEST, seed: int = 0) -> Path:
    """Write random Fashion-MNIST-shaped IDX files under root (torchvision's layout); returns root."""
    rng = np.random.default_rng(seed)
    train_images, train_labels, test_images, test_labels = expected_files("fashion-mnist", Path(root))
    for images, labels, n in ((train_images, train_labels, n_train), (test_images, test_labels, n_test)):
        _write_idx(images, IDX_MAGIC["images"], rng.integers(0, 256, (n, FASHION_SIZE, FASHION_SIZE), dtype=np.uint8))
        _write_idx(labels, IDX_MAGIC["labels"], rng.integers(0, FASHION_CLASSES, n, dtype=np.uint8))
    return Path(root)
