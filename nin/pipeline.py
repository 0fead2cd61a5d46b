"""The device batch pipeline: a dataset's uint8 tensors kept on the device, batched by tensor ops.

Resize, normalization and augmentation run on whole batches on the device (no per-image Python); shuffling and
augmentation draws are seeded from (seed, epoch) only, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from nin.canvas import scale_boxes
from nin.data import DataTensors, on_canvas, stratified_quota, with_validation
from nin.errors import InputError
from nin.seeding import epoch_seed

if TYPE_CHECKING:
    from nin.variant import Variant


def stratified_subset(y: torch.Tensor, size: int, classes: int) -> torch.Tensor:
    """Indices of the first images of each class, class shares as in y (largest remainder), in their original order."""
    quota = stratified_quota(y, size, classes)
    picks = [torch.nonzero(y == c).flatten()[: int(quota[c])] for c in range(classes)]
    return torch.cat(picks).sort().values


class DeviceData:
    """A dataset's uint8 tensors on one device and the batched ops that turn them into model inputs."""

    def __init__(
        self,
        data: DataTensors,
        device: torch.device | str,
        image_size: int,
        augment: bool = False,
        channels_last: bool = False,
        train_size: int | None = None,
        test_size: int | None = None,
    ) -> None:
        self.name, self.classes, self.device = data.name, data.classes, torch.device(device)
        self.image_size, self.augment, self.channels_last = image_size, augment, channels_last
        self.native_size = data.train_x.shape[-1]
        self.pad = max(1, round(image_size / 8))  # random-crop padding: 4 px at 32 px, scaled with the size
        self.canvas = data.canvas
        self._x, self._y = {}, {}
        # Boxes of the objects in model-input pixels (scaled with the resize); None without a canvas.
        self.boxes: dict[str, torch.Tensor | None] = {}
        splits = [
            ("train", data.train_x, data.train_y, data.train_boxes, train_size),
            ("test", data.test_x, data.test_y, data.test_boxes, test_size),
        ]
        if data.val_y is not None:  # the held-out part of the training split (nin.data.with_validation), whole
            splits.append(("val", data.val_x, data.val_y, data.val_boxes, None))
        for split, x, y, boxes, size in splits:
            if size is not None and size > len(y):
                held = f" left after validation={data.validation:g}" if split == "train" and data.validation else ""
                raise InputError(
                    f"{split}_size={size} but {data.name} has {len(y)} {split} images{held}; lower it or leave it unset"
                )
            if size is not None and size < len(y):
                keep = stratified_subset(y, size, data.classes)
                x, y = x[keep], y[keep]
                boxes = boxes[keep] if boxes is not None else None
            self._x[split], self._y[split] = x.to(self.device), y.to(self.device)
            if boxes is not None:
                boxes = scale_boxes(boxes, self.native_size, image_size).to(self.device)
            self.boxes[split] = boxes
        self.n_train, self.n_test = len(self._y["train"]), len(self._y["test"])
        self.n_val = len(self._y["val"]) if "val" in self._y else 0
        mean = torch.tensor(data.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(data.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        # (x / 255 - mean) / std as one multiply-add on the 0..255 floats.
        self._scale, self._shift = 1 / (255 * std), -mean / std

    @classmethod
    def from_variant(cls, data: DataTensors, device: torch.device | str, variant: Variant) -> DeviceData:
        """The one way a variant's settings become a device pipeline (training, bench and fixed-cost alike).

        A variant with a canvas gets the canvas copy of `data` (nin.data.on_canvas, cached per process): placed
        before the subset is taken, so that an image's position never depends on train_size or test_size. A variant
        with `validation` then holds out its fixed part of the training split (nin.data.with_validation, cached per
        process) before train_size subsets what remains."""
        if variant.canvas is not None:
            data = on_canvas(data, variant.canvas)
        if variant.validation is not None:
            data = with_validation(data, variant.validation)
        return cls(
            data,
            device,
            variant.image_size,
            augment=variant.augment,
            channels_last=variant.channels_last,
            train_size=variant.train_size,
            test_size=variant.test_size,
        )

    def batches_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.n_train / batch_size)

    def train_batches(self, batch_size: int, seed: int, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled (and augmented) batches; the draws depend on (seed, epoch) only, so a resumed run repeats them."""
        g = torch.Generator().manual_seed(epoch_seed(seed, epoch, "data"))
        n = self.n_train
        order = torch.randperm(n, generator=g).to(self.device)
        if self.augment:  # one crop offset and flip per batch slot, drawn on the CPU: identical on every device
            shifts = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=g).to(self.device)
            flips = (torch.rand(n, generator=g) < 0.5).to(self.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            x = self._resized(self._x["train"][idx])
            if self.augment:
                x = self._crop_flip(x, shifts[start : start + batch_size], flips[start : start + batch_size])
            yield self._normalized(x), self._y["train"][idx]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the "train", "test" or (with a validation hold-out) "val" split in order, never augmented."""
        if split not in self._x:
            raise ValueError(f"split must be one of {', '.join(map(repr, self._x))}, not {split!r}")
        x, y = self._x[split], self._y[split]
        for start in range(0, len(y), batch_size):
            yield self._normalized(self._resized(x[start : start + batch_size])), y[start : start + batch_size]

    def images(self, split: str, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(model inputs, the same images un-normalised as float 0..255, labels) of a split at `index`."""
        raw = self._resized(self._x[split][index.to(self.device)])
        return self._normalized(raw), raw, self._y[split][index.to(self.device)]

    def _resized(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.image_size == self.native_size:
            return x
        # Bilinear as torchvision's Resize; antialias only matters (and is only paid for) when shrinking.
        down = self.image_size < self.native_size
        return F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False, antialias=down)

    def _crop_flip(self, x: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        """Random crop of the zero-padded (black) image and horizontal flip, as two gathers and a select."""
        b, c, h, w = x.shape
        p = self.pad
        padded = F.pad(x, (p, p, p, p))
        rows = (shifts[:, :1] + torch.arange(h, device=x.device)).view(b, 1, h, 1).expand(b, c, h, w + 2 * p)
        cols = (shifts[:, 1:] + torch.arange(w, device=x.device)).view(b, 1, 1, w).expand(b, c, h, w)
        x = padded.gather(2, rows).gather(3, cols)
        return torch.where(flips.view(b, 1, 1, 1), x.flip(3), x)

    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.addcmul(self._shift, x, self._scale)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
