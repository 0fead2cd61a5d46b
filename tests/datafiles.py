"""Dataset files in the formats torchvision reads, written small by the tests that need them."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, magic: int, array: np.ndarray, gz: bool = False) -> None:
    payload = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def make_mnist(root: Path, folder: str = "FashionMNIST", gz: bool = False) -> dict[str, np.ndarray]:
    """64 train + 32 test images in the IDX files torchvision's MNIST classes read (MNIST's folder: "MNIST")."""
    raw = root / folder / "raw"
    arrays = {}
    for prefix, n in (("train", 64), ("t10k", 32)):
        images = np.random.default_rng(n).integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", 0x0803, images, gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", 0x0801, labels, gz)
        arrays[prefix] = (images, labels)
    return arrays
