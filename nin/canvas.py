"""Translated images: each image pasted at its native size at a random position on a black square canvas.

Positions depend on (seed, split) and the image's index only, never on the variant or its training seed, so every
run of a grid sees the same canvases; the draw for image i does not depend on how many images follow it.
The pasting is one indexed write for the whole batch, on the images' device.

torch is imported inside the functions that need it: nin.variant validates a canvas with check_canvas's wording
while a grid is parsed, before any torch import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from nin.errors import InputError

if TYPE_CHECKING:
    import torch


def _positions_seed(seed: int, split: str) -> np.random.SeedSequence:
    # The split's bytes make the train and test draws independent streams of the same seed.
    return np.random.SeedSequence([int(seed), *split.encode()])


NOT_POSITIVE = "canvas must be a positive integer (pixels per side)"


def is_positive_int(canvas: object) -> bool:
    return not isinstance(canvas, bool) and isinstance(canvas, (int, np.integer)) and canvas > 0


def too_small(canvas: int, native_size: int) -> str:
    """The one wording for a canvas that cannot hold the images (nin.variant's validation says it too)."""
    return (
        f"canvas {canvas} is not larger than the images ({native_size}×{native_size} px): "
        f"set canvas to at least {native_size + 1}"
    )


def check_canvas(canvas: object, native_size: int) -> int:
    """The canvas size, or an InputError naming what is wrong: it must be an integer larger than the images."""
    if not is_positive_int(canvas):
        raise InputError(f"{NOT_POSITIVE}, got {canvas!r}")
    if canvas <= native_size:  # type: ignore[operator]
        raise InputError(too_small(int(canvas), native_size))  # type: ignore[arg-type]
    return int(canvas)  # type: ignore[arg-type]


def canvas_positions(n: int, h: int, w: int, canvas: int, seed: int, split: str) -> torch.Tensor:
    """[n, 2] int64 (x0, y0): top-left corners, uniform over every position where an h×w image fits."""
    import torch

    u = np.random.default_rng(_positions_seed(seed, split)).random((n, 2))  # one row per image, in order
    span = np.array([canvas - w + 1, canvas - h + 1])
    return torch.from_numpy(np.minimum((u * span).astype(np.int64), span - 1))


def place_on_canvas(images: torch.Tensor, canvas: int, seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste uint8 images [N, C, h, w] onto black canvases [N, C, canvas, canvas]; boxes [N, 4] int64 are
    (x0, y0, x1, y1) in canvas pixels, half-open, on the images' device."""
    import torch

    if images.dim() != 4:
        raise ValueError(f"images must be a batch [N, C, h, w], got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    canvas = check_canvas(canvas, max(h, w))
    device = images.device
    corners = canvas_positions(n, h, w, canvas, seed, split).to(device)
    x0, y0 = corners[:, 0], corners[:, 1]
    out = torch.zeros(n, c, canvas, canvas, dtype=images.dtype, device=device)
    # Index grids: image n's pixel (i, j) goes to canvas row y0[n] + i, column x0[n] + j.
    rows = (y0[:, None] + torch.arange(h, device=device)).view(n, 1, h, 1)
    cols = (x0[:, None] + torch.arange(w, device=device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=device).view(n, 1, 1, 1)
    chans = torch.arange(c, device=device).view(1, c, 1, 1)
    out[batch, chans, rows, cols] = images
    boxes = torch.stack([x0, y0, x0 + w, y0 + h], dim=1)
    return out, boxes


def scale_boxes(boxes: torch.Tensor, from_size: int | Sequence[int], to_size: int | Sequence[int]) -> torch.Tensor:
    """Boxes in a from_size canvas → the same boxes after resizing it to to_size (float32; sizes as int or (h, w)).

    A bilinear resize maps canvas coordinate x to x · to/from, so box edges scale exactly (they may fall between
    pixels; nin.cam's measures count a pixel in a box by its centre)."""
    import torch

    fh, fw = (from_size, from_size) if isinstance(from_size, int) else from_size
    th, tw = (to_size, to_size) if isinstance(to_size, int) else to_size
    factor = torch.tensor([tw / fw, th / fh, tw / fw, th / fh], dtype=torch.float32, device=boxes.device)
    return boxes.to(torch.float32) * factor
