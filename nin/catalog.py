"""What the harness knows about each dataset before loading it: shape and class count (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    classes: int
    native_size: int
    train_images: int  # the standard split's sizes (train_size/test_size in a grid take fewer)
    test_images: int
    embedded: bool = False  # ships with an installed package: needs no download


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("fashion-mnist", 1, 10, 28, 60_000, 10_000),
        DatasetInfo("mnist", 1, 10, 28, 60_000, 10_000),
        DatasetInfo("cifar10", 3, 10, 32, 50_000, 10_000),
        DatasetInfo("cifar100", 3, 100, 32, 50_000, 10_000),
        DatasetInfo("svhn", 3, 10, 32, 73_257, 26_032),
        DatasetInfo("digits", 1, 10, 8, 1_437, 360, embedded=True),
        DatasetInfo("synthetic", 1, 10, 16, 500, 100, embedded=True),
    )
}
