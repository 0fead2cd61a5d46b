"""runners.grid_runs: the runs a grid has now, in one place: the grid file's variants, and the seeds its
looks.json added when that record is this grid's sequence (a tuned grid's picks: tests/runners/test_until_resolved.py
grows one through the runner and lists it)."""

from __future__ import annotations

import json
from pathlib import Path

from judge import looks, sequential
from nin.layout import GridDir
from runners import grid_runs
from runners.overrides import parse_overrides
from runners.spec import load_grid
from tests.conftest import REPO


def quick(tmp_path: Path) -> tuple:
    grid = load_grid(REPO / "ablations" / "quick.yaml", overrides=parse_overrides(("seeds=3",)))
    grid_dir = GridDir(tmp_path / grid.name)
    grid_dir.root.mkdir(parents=True)
    return grid, grid_dir


def write_sequence(grid_dir: GridDir, base_runs: str, groups: tuple[str, ...]) -> None:
    design = sequential.plan(["cccp_2_vs_0_accuracy"], 3, 1, 5)
    look = looks.Look(1, (0, 1, 2), design.confidences[0], decision=looks.ADD, added_seeds=(3,), added_groups=groups)
    record = looks.Sequence("quick", base_runs, (0, 1, 2), (), 14, design, (look,))
    grid_dir.looks_path.write_text(json.dumps(record.as_record()))


def test_the_seeds_a_look_added_belong_to_the_grid(tmp_path: Path) -> None:
    grid, grid_dir = quick(tmp_path)
    warned: list[str] = []
    assert grid_runs.current(grid, grid_dir, warn=warned.append).variants == grid.variants  # no looks.json yet
    groups = tuple(sorted({v.group_id for v in grid.variants})[:2])
    write_sequence(grid_dir, grid_runs.base_digest(grid), groups)
    now = grid_runs.current(grid, grid_dir, warn=warned.append)
    added = now.variants[len(grid.variants):]
    assert now.variants[: len(grid.variants)] == grid.variants and warned == []
    assert [(v.group_id, v.seed) for v in added] == [(g, 3) for g in groups]
    template = {v.group_id: v for v in grid.variants}
    assert all(v.config() == {**template[v.group_id].config(), "seed": 3} for v in added)


def test_a_record_of_another_grid_or_an_unreadable_one_adds_nothing_and_says_why(tmp_path: Path) -> None:
    grid, grid_dir = quick(tmp_path)
    write_sequence(grid_dir, "another-version", (grid.variants[0].group_id,))
    warned: list[str] = []
    assert grid_runs.current(grid, grid_dir, warn=warned.append).variants == grid.variants
    assert len(warned) == 1 and "sequence of another version of this grid" in warned[0]
    grid_dir.looks_path.write_text("{not json")
    assert grid_runs.current(grid, grid_dir, warn=warned.append).variants == grid.variants
    assert len(warned) == 2 and "unreadable" in warned[1] and "not part of this run" in warned[1]
