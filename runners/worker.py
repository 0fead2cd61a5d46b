"""One variant in one worker: skip if finished, resume if checkpointed, record any failure as a result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from nin import store
from nin.layout import GridDir, read_result
from nin.results import failed_result, now_iso
from nin.train import train
from nin.variant import Variant


@dataclass(frozen=True)
class RunContext:
    """Everything a worker needs besides the variant; plain values, so it crosses process and Ray boundaries."""

    grid_dir: Path
    grid_name: str
    data_dir: str | None = None
    download: bool = False
    wandb_mode: str = "offline"
    wandb_project: str | None = None
    wandb_entity: str | None = None
    progress: bool = True
    cpu_threads: int | None = None  # torch threads per CPU worker; CPU results are bit-identical at equal counts
    # A tuned grid's stage-2 runs: the settings picked on validation (runners.tuning), recorded in result.json as
    # `tuned` so that a report keeps them out of its axes, pairs and labels.
    tuned: tuple[str, ...] = ()


def run_variant(
    variant: Variant, context: RunContext, device: torch.device, progress_position: int = 1
) -> dict[str, Any]:
    """Train one variant into the grid's layout; returns its result. Only KeyboardInterrupt escapes.

    The dataset comes from nin.data's per-process cache: a worker decodes each dataset once for all its variants."""
    grid = GridDir(Path(context.grid_dir))
    result_path = grid.result_path(variant.id)
    if result_path.is_file():
        return read_result(result_path)
    from nin.data import load_dataset
    from nin.tracking import make_tracker
    from reports.cam_figure import row_image  # the report's own drawing: the W&B run shows what the page shows

    tracker = make_tracker(
        context.wandb_mode, grid.root, context.grid_name, project=context.wandb_project, entity=context.wandb_entity,
        cam_image=row_image,
    )  # fmt: skip
    started = now_iso()
    tuned = {key: getattr(variant, key) for key in context.tuned}
    try:
        return train(
            variant,
            grid.run_dir(variant.id),
            device=device,
            data=load_dataset(variant.dataset, context.data_dir, download=context.download),
            tracker=tracker,
            progress=context.progress,
            progress_position=progress_position,
            log=tqdm.write,
            threads=context.cpu_threads if device.type == "cpu" else None,
            tuned=tuned,
        )
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # CUDA OOM included: the grid goes on, the failure is a result
        if device.type == "cuda":
            torch.cuda.empty_cache()
        result = failed_result(variant, exc, started, device, run_dir=grid.run_dir(variant.id), tuned=tuned)
        tqdm.write(f"{variant.id}: failed: {result['error']}")
        try:
            store.write_json(result_path, result)
        except OSError as write_error:  # e.g. disk full: no result file, so a rerun retries this variant
            tqdm.write(f"{variant.id}: could not record the failure either: {write_error}")
        tracker.finish(result)
        return result
