"""The runs a grid has now, computed in one place: the grid file's variants; a tuned grid's at each arm's pick; and
every seed its `run --until-resolved` sequence added (OUT/<grid>/looks.json).

    grid_runs.current(grid, grid_dir)          # what `run` trains, `list` lists and spec.yaml names
    grid_runs.base(grid, plans)                # before any look: what a sequence grows from (base_digest)

The seeds a look adds are part of the grid from then on: every later `run` or `list` of the same grid file reads
them from looks.json, so they are never stale. A looks.json of another version of the grid (its base runs differ)
adds nothing: its runs are then stale like any other run of an earlier grid.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

from judge import looks
from nin.errors import InputError
from nin.layout import GridDir
from nin.variant import Variant
from runners import tuning
from runners.spec import Grid


def current(grid: Grid, grid_dir: GridDir, plans: Sequence[tuning.ArmPlan] | None = None,
            warn: Callable[[str], None] | None = None) -> Grid:  # fmt: skip
    """The grid with every run it has now. `grid`: as the grid file gives it; `plans`: a tuned grid's finished
    stage 1 (default: read from grid_dir's tuning runs). `warn` (default: stderr) hears why a looks.json adds
    nothing."""
    start = base(grid, plans if plans is not None or grid.tune is None else tuning.plan(grid, grid_dir.tuning))
    return with_additions(start, _additions(start, grid_dir, warn or _stderr))


def base(grid: Grid, plans: Sequence[tuning.ArmPlan] | None = None) -> Grid:
    """The grid's own runs, before any look: its variants, or a tuned grid's arms at their picks on its seeds."""
    if grid.tune is None:
        return grid
    assert plans is not None, "a tuned grid's runs follow its picks: pass its stage-1 plans"
    return tuning.picked_grid(grid, plans)


def base_digest(grid: Grid) -> str:
    """What a sequence's runs grow from: the grid's own runs (a tuned grid's arms on its seeds), by id."""
    ids = "\n".join(sorted(v.id for v in grid.planned()))
    return hashlib.sha256(ids.encode()).hexdigest()[:16]


def with_additions(grid: Grid, taken: Sequence[looks.Look]) -> Grid:
    """The grid's variants and, look by look, each added seed for each added variant."""
    templates: dict[str, Variant] = {}
    for variant in grid.variants:
        templates.setdefault(variant.group_id, variant)
    added = [
        Variant.model_validate({**templates[group].config(), "seed": seed})
        for look in taken
        for seed in look.added_seeds
        for group in look.added_groups
        if group in templates
    ]
    return replace(grid, variants=(*grid.variants, *added))


def existing(grid_dir: GridDir) -> looks.Sequence | None:
    """The grid's looks.json, or None; InputError (one line) when it is there but unreadable."""
    path = grid_dir.looks_path
    if not path.is_file():
        return None
    try:
        return looks.read(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({exc}): restore it, or move it away to start a new sequence") from None


def _additions(start: Grid, grid_dir: GridDir, warn: Callable[[str], None]) -> tuple[looks.Look, ...]:
    """The looks of grid_dir's looks.json when it is this grid's sequence; none otherwise (and `warn` says why)."""
    try:
        record = existing(grid_dir)
    except InputError as error:
        warn(f"nin-ablate: warning: {error}; its added seeds are not part of this run")
        return ()
    if record is None:
        return ()
    if record.looks and record.base_runs != base_digest(start):
        warn(f"nin-ablate: warning: {grid_dir.looks_path} is the sequence of another version of this grid: its added "
             f"seeds are not part of this run")  # fmt: skip
        return ()
    return record.looks


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)
