"""The class-map figure: the runs' cam.npz files (nin.cam) drawn as one grid of images, maps and boxes.

    path = write_cam_figure(results, plot_dir)   # plots/cam.png, or None when no run kept class maps
    image = row_image(cam_file, "d2l-gap-cccp2-do1-s0-3f9a1c")   # one run's row as an RGB array (for W&B)

Columns are the 8 fixed test images of every run; rows are heads (seed 0, the grid's first cccp and dropout
levels), the seeds' ReLU GAP head and the AlexNet reference where the grid has them. Each cell shows the image as
the net saw it, the true-class map over it (alpha), the object's box, and the predicted class with its probability.
Reads files with numpy only: never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from judge.load import Results
from nin.layout import GridDir

CAM_PLOT = "cam"  # plots/cam.png, and its key in a Report's plots (the W&B report run logs it as plots/cam)
CELL_INCHES = 1.55
MAP_ALPHA = 0.5
HEAD_NAMES = {"gap": "GAP", "fc": "FC", "alexnet": "AlexNet head"}


@dataclass(frozen=True)
class CamRow:
    label: str  # what the row shows, in words (several lines)
    arrays: dict[str, np.ndarray]  # cam.npz's arrays


def read_cam(path: Path) -> dict[str, np.ndarray]:
    """cam.npz as a dict of arrays (no pickles: every array is plain numbers or text)."""
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def cam_rows(results: Results) -> list[CamRow]:
    """The figure's rows: one ok run per head at the first seed, first cccp and first dropout level, the GAP head's
    other gap_relu level as a row of its own, then the AlexNet reference; only runs that kept a cam.npz."""
    layout = GridDir(results.grid_dir)
    ok = results.ok
    ok = ok[[layout.cam_path(str(v)).is_file() for v in ok["variant_id"]]]
    if ok.empty:
        return []
    first_seed = ok["seed"].min()
    ok = ok[ok["seed"] == first_seed]
    chosen: list[pd.Series] = []
    nin = ok[ok["model"] == "nin"]
    for column in ("cccp", "dropout"):
        present = set(nin[column].dropna().tolist())
        order = [level for level in (results.level_order(column) or []) if level in present] or sorted(present)
        if order:
            nin = nin[nin[column] == order[0]]
    heads = [h for h in (results.level_order("head") or []) if h in set(nin["head"])]
    heads += sorted(set(nin["head"].dropna()) - set(heads))
    for head in heads:
        same = nin[nin["head"] == head]
        if head == "gap" and "gap_relu" in same and same["gap_relu"].notna().any():
            # The main GAP row is the gap_relu level most GAP runs have; the other level (the seeds' ReLU) follows.
            counts = same["gap_relu"].dropna().map(bool).value_counts()
            for level in counts.index:
                chosen.append(same[same["gap_relu"].map(lambda v, level=level: bool(v) == level)].iloc[0])
        else:
            chosen.append(same.iloc[0])
    chosen += [row for _, row in ok[ok["model"] != "nin"].iterrows()][:1]
    return [CamRow(_row_label(row), read_cam(layout.cam_path(str(row["variant_id"])))) for row in chosen]


def _row_label(row: pd.Series) -> str:
    if row["model"] == "nin":
        head = HEAD_NAMES.get(str(row["head"]), str(row["head"]))
        if row["head"] == "gap" and pd.notna(row.get("gap_relu")):
            head += ", ReLU maps" if bool(row["gap_relu"]) else ", linear maps"
    else:
        head = "AlexNet reference"
    method = row.get("cam_method") if isinstance(row.get("cam_method"), str) else "map"
    resolution = row.get("cam_resolution") if isinstance(row.get("cam_resolution"), str) else "?"
    lines = [head, f"{'CAM' if method == 'cam' else 'Grad-CAM'} {resolution}", f"seed {row['seed']}"]
    return "\n".join(lines)


def draw(rows: Sequence[CamRow], title: str | None = None) -> Figure:
    """One row per CamRow, one column per image: the image in grey (or colour), its map over it, the box."""
    columns = max(len(row.arrays["classes"]) for row in rows)
    figure = Figure(figsize=(1.6 + CELL_INCHES * columns, 0.4 + CELL_INCHES * 1.12 * len(rows)), layout="constrained")
    if title:
        figure.suptitle(title)
    axes = np.atleast_2d(figure.subplots(len(rows), columns, squeeze=False))
    for r, row in enumerate(rows):
        a = row.arrays
        for c in range(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(a["classes"]):
                ax.axis("off")
                continue
            image = a["images"][c]
            if image.shape[0] == 1:
                ax.imshow(image[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(np.moveaxis(image, 0, -1), interpolation="nearest")
            heat = a["maps"][c].astype(np.float32)
            low, high = float(heat.min()), float(heat.max())
            ax.imshow(heat, cmap="jet", alpha=MAP_ALPHA, vmin=low, vmax=high if high > low else low + 1)
            x0, y0, x1, y1 = (float(v) for v in a["boxes"][c])
            # Pixel j covers [j − 0.5, j + 0.5] in imshow's coordinates; boxes are in pixel-edge coordinates.
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="white", lw=1.5))
            true, predicted = int(a["classes"][c]), int(a["predicted"][c])
            colour = "#1d5e12" if predicted == true else "#8a1a10"
            ax.set_title(f"{predicted} ({float(a['probability'][c]):.0%}), true {true}", fontsize=8, color=colour)
        axes[r, 0].set_ylabel(row.label, rotation=0, ha="right", va="center", fontsize=9, labelpad=8)
    return figure


def write_cam_figure(results: Results, plot_dir: Path) -> Path | None:
    """plots/cam.png from the runs' cam.npz files; None (nothing written) when no ok run kept class maps."""
    rows = cam_rows(results)
    if not rows:
        return None
    plot_dir.mkdir(parents=True, exist_ok=True)
    path = plot_dir / f"{CAM_PLOT}.png"
    title = "Class maps of the true class on the first 8 test images (title: predicted class, probability)"
    draw(rows, title).savefig(path, dpi=100, bbox_inches="tight")
    return path


def row_image(cam_file: Path, label: str) -> np.ndarray[Any, Any]:
    """One run's row as an RGB uint8 array [H, W, 3] (the variant's W&B run logs it as an image)."""
    figure = draw([CamRow(label, read_cam(cam_file))])
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
