"""What the harness knows about each dataset before loading it: shape and class count (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    classes: int
    native_size: int
    embedded: bool = False  # ships with an installed package: needs no download


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("fashion-mnist", 1, 10, 28),
        DatasetInfo("mnist", 1, 10, 28),
        DatasetInfo("cifar10", 3, 10, 32),
        DatasetInfo("cifar100", 3, 100, 32),
        DatasetInfo("svhn", 3, 10, 32),
        DatasetInfo("digits", 1, 10, 8, embedded=True),
        DatasetInfo("synthetic", 1, 10, 16, embedded=True),
    )
}
