"""Class maps for every head, and the localisation measures computed on them.

`class_maps` gives one map per image for a chosen class, upsampled to the input size:
- GAP head: the class's own map from the head's NiN block (CAM; the GAP head *is* a linear read-out of it);
- FC head, AlexNet head, the AlexNet reference: Grad-CAM on the output of the trunk's last NiN block, before its pool.

The measures take maps [N, H, W] and boxes [N, 4] as (x0, y0, x1, y1) in pixel coordinates of the map, half-open:
pixel (row i, column j) is inside when x0 <= j + 0.5 < x1 and y0 <= i + 0.5 < y1 (its centre is in the box), which
for integer boxes is x0 <= j < x1, and which keeps its meaning for the fractional boxes a resize gives.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from nin.pipeline import DeviceData

# Cells within this share of the map's range below its maximum are part of its peak: bilinear upsampling gives a
# peak plateau whose cells differ only by rounding, and the peak's position is their centroid.
PEAK_TOLERANCE = 1e-6


@dataclass(frozen=True)
class CamResult:
    maps: torch.Tensor  # [N, H, W] float32, upsampled (bilinear) to the input size
    cam_resolution: tuple[int, int]  # (h, w) of the maps before upsampling
    method: str  # "cam" (GAP head) or "gradcam" (FC/AlexNet heads)
    predicted: torch.Tensor  # [N] int64, the net's predicted class
    probability: torch.Tensor  # [N] float32, softmax probability of the predicted class


def _is_gap_head(head: nn.Module) -> bool:
    """The GAP head is nin_block → AdaptiveAvgPool2d → Flatten (nin.models.build_nin)."""
    return (
        isinstance(head, nn.Sequential)
        and len(head) >= 2
        and isinstance(head[0], nn.Sequential)
        and isinstance(head[1], nn.AdaptiveAvgPool2d)
    )


def _last_block_index(trunk: nn.Module) -> int:
    """Index of the trunk's last NiN block (a Sequential that starts with a conv): Grad-CAM's layer."""
    children = list(trunk.children()) if isinstance(trunk, nn.Sequential) else []
    for i in range(len(children) - 1, -1, -1):
        block = children[i]
        if isinstance(block, nn.Sequential) and len(block) and isinstance(block[0], nn.Conv2d):
            return i
    raise ValueError("class_maps needs a nin Net whose trunk is a Sequential holding at least one NiN block")


def _classes_tensor(classes: torch.Tensor | Sequence[int], n: int, n_classes: int, device: torch.device):
    classes = torch.as_tensor(classes, dtype=torch.long, device=device).flatten()
    if classes.numel() != n:
        raise ValueError(f"class_maps needs one class per image: {n} images, {classes.numel()} classes")
    if n and (int(classes.min()) < 0 or int(classes.max()) >= n_classes):
        raise ValueError(f"classes must lie in 0..{n_classes - 1}, got {classes.min()}..{classes.max()}")
    return classes


def class_maps(model: nn.Module, images: torch.Tensor, classes: torch.Tensor | Sequence[int]) -> CamResult:
    """Per-image class maps of `model` (a nin Net of any head) for `classes` (one per image), at the input size.

    The net runs in eval mode (no dropout); its mode and every parameter's requires_grad are restored afterwards,
    no parameter gradient is written, and it works inside a caller's torch.no_grad().
    GAP maps are kept as they are (negative where gap_relu is false); Grad-CAM maps are ReLU(Σ_k α_k A_k), with
    α_k the spatial mean of ∂logit/∂A_k.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be a batch [N, C, H, W], got shape {tuple(images.shape)}")
    model.check_input(images.shape[-2], images.shape[-1])
    trunk, head = model.trunk, model.head
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)  # gradients are needed for the activations only: no parameter graph is kept
        if _is_gap_head(head):
            with torch.no_grad():
                native_all = head[0](trunk(images))  # [N, classes, h, w]: the class maps GAP averages
                logits = head[1:](native_all)
            classes_t = _classes_tensor(classes, len(images), logits.shape[1], logits.device)
            native = native_all[torch.arange(len(images), device=logits.device), classes_t]
            method = "cam"
        else:
            k = _last_block_index(trunk)
            with torch.no_grad():
                features = trunk[: k + 1](images)
            with torch.enable_grad():
                features = features.detach().requires_grad_(True)
                logits = head(trunk[k + 1 :](features))
                classes_t = _classes_tensor(classes, len(images), logits.shape[1], logits.device)
                # Images are independent in eval mode, so one backward of the summed scores gives every image's.
                score = logits.gather(1, classes_t[:, None]).sum()
                (grads,) = torch.autograd.grad(score, features)
            weights = grads.mean(dim=(2, 3), keepdim=True)
            native = torch.relu((weights * features.detach()).sum(dim=1))
            logits = logits.detach()
            method = "gradcam"
    finally:
        model.train(was_training)
        for p, flag in flags:
            p.requires_grad_(flag)
    native = native.float()
    maps = F.interpolate(native[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    probs = torch.softmax(logits.float(), dim=1)
    probability, predicted = probs.max(dim=1)
    return CamResult(maps, (native.shape[-2], native.shape[-1]), method, predicted, probability)


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _check(maps: torch.Tensor, boxes: torch.Tensor) -> None:
    if maps.dim() != 3 or boxes.shape != (maps.shape[0], 4):
        raise ValueError(f"maps must be [N, H, W] and boxes [N, 4], got {tuple(maps.shape)} and {tuple(boxes.shape)}")


def _box_axes(boxes: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, H] and [N, W] bool: the rows and the columns whose pixel centres lie in each box."""
    boxes = boxes.to(torch.float64)
    ys = torch.arange(height, dtype=torch.float64, device=boxes.device) + 0.5
    xs = torch.arange(width, dtype=torch.float64, device=boxes.device) + 0.5
    in_y = (ys >= boxes[:, 1:2]) & (ys < boxes[:, 3:4])
    in_x = (xs >= boxes[:, 0:1]) & (xs < boxes[:, 2:3])
    return in_y, in_x


def box_masks(boxes: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """[N, H, W] bool: the pixels whose centres lie in each box (x0, y0, x1, y1), half-open."""
    in_y, in_x = _box_axes(boxes, *_size(size))
    return in_y[:, :, None] & in_x[:, None, :]


def pointing_hits(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """[N] bool: the map's peak lies inside the box (the pointing game). A constant map points nowhere: a miss.

    A peak spread over several cells (ties, up to PEAK_TOLERANCE of the range) is placed at their centroid."""
    _check(maps, boxes)
    _, height, width = maps.shape
    maps = maps.float()
    top, bottom = maps.amax(dim=(1, 2)), maps.amin(dim=(1, 2))
    span = top - bottom
    peak = maps >= (top - PEAK_TOLERANCE * span)[:, None, None]
    # The centroid from the peak's row and column counts: two small reductions instead of an [N, H·W] product.
    per_row, per_col = peak.sum(dim=2).double(), peak.sum(dim=1).double()
    count = per_row.sum(dim=1)
    ys = torch.arange(height, dtype=torch.float64, device=maps.device) + 0.5
    xs = torch.arange(width, dtype=torch.float64, device=maps.device) + 0.5
    cy, cx = (per_row * ys).sum(dim=1) / count, (per_col * xs).sum(dim=1) / count
    b = boxes.to(device=maps.device, dtype=torch.float64)
    inside = (cx >= b[:, 0]) & (cx < b[:, 2]) & (cy >= b[:, 1]) & (cy < b[:, 3])
    return inside & (span > 0)


def energy_share(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """[N] float: the share of the map's positive mass inside the box; 0 for a map with no positive mass."""
    _check(maps, boxes)
    positive = maps.float().clamp(min=0)
    in_y, in_x = _box_axes(boxes.to(maps.device), maps.shape[-2], maps.shape[-1])
    total = positive.sum(dim=(1, 2))
    # Σ over the box = the box's rows of (map · its column mask): one batched matrix-vector product.
    per_row = torch.bmm(positive, in_x.float()[:, :, None])[:, :, 0]
    inside = (per_row * in_y).sum(dim=1)
    return torch.where(total > 0, inside / total.clamp(min=torch.finfo(torch.float32).tiny), 0.0)


def box_share(boxes: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """[N] float: box area / canvas area, the expected pointing score of a map whose peak falls at random."""
    height, width = _size(size)
    b = boxes.to(torch.float64)
    return ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / (height * width)).float()


# ---- after training: the measures over a test split, and the file the report draws ------------------------------
CAM_IMAGES = 8  # the first 8 test images: the same for every run of a grid (positions are fixed per split)


def measure_localisation(model: nn.Module, data: DeviceData, batch_size: int) -> tuple[dict[str, Any], dict]:
    """Class maps of the true class for every test image of `data` (a DeviceData with a canvas), in batches.

    Returns (outcomes for result.json: loc_pointing, loc_energy, loc_pointing_chance, cam_method, cam_resolution,
    cam_seconds; the arrays of cam.npz for the first CAM_IMAGES test images)."""
    from nin.device import synchronize

    boxes = data.boxes["test"]
    if boxes is None:
        raise ValueError("measure_localisation needs data placed on a canvas (a variant with canvas set)")
    start = time.perf_counter()
    hits = energy = 0.0
    result: CamResult | None = None
    n = data.n_test
    for begin in range(0, n, batch_size):
        index = torch.arange(begin, min(begin + batch_size, n))
        x, _, y = data.images("test", index)
        result = class_maps(model, x, y)
        batch_boxes = boxes[begin : begin + len(index)]
        hits += float(pointing_hits(result.maps, batch_boxes).sum())
        energy += float(energy_share(result.maps, batch_boxes).sum())
    chance = float(box_share(boxes, data.image_size).sum())
    synchronize(data.device)
    seconds = time.perf_counter() - start
    assert result is not None  # a split is never empty (nin.data validates it)
    height, width = result.cam_resolution
    outcomes = {
        "loc_pointing": hits / n,
        "loc_energy": energy / n,
        "loc_pointing_chance": chance / n,
        "cam_method": result.method,
        "cam_resolution": f"{height}x{width}",
        "cam_seconds": seconds,
    }
    # The figure's images: maps recomputed for the first few (cheap), images as the net sees them, un-normalised.
    index = torch.arange(min(CAM_IMAGES, n))
    x, raw, y = data.images("test", index)
    figure = class_maps(model, x, y)
    arrays = {
        "images": raw.round().clamp(0, 255).to(torch.uint8).cpu().numpy(),
        "maps": figure.maps.to(torch.float16).cpu().numpy(),
        "boxes": boxes[: len(index)].float().cpu().numpy(),
        "classes": y.cpu().numpy(),
        "predicted": figure.predicted.cpu().numpy(),
        "probability": figure.probability.float().cpu().numpy(),
        "method": np.array(figure.method),
        "cam_resolution": np.array(figure.cam_resolution, dtype=np.int64),
    }
    return outcomes, arrays


def write_cam_file(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """cam.npz, atomically like every file of a run directory (reports read it with numpy alone)."""
    from nin.store import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
