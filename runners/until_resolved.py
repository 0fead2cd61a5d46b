"""`nin-ablate run SPEC --until-resolved`: the grid's seeds first, then more seeds only where a verdict is still open.

The rule is judge.sequential's (planned looks, repeated t intervals, one error budget); this module feeds it runs.
OUT/<grid>/looks.json (judge.looks.Sequence) holds the design (written before the first look) and every look: its
seeds, each claim's verdict, the open claims and the decision, written before the runs that decision adds are
trained. The seeds a look adds are part of the grid from then on (runners.grid_runs.current). A rerun after a kill
follows the record: it trains what the last look added and is unfinished, then takes the next look; no look is
decided twice and no run is trained twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from judge import looks, sequential
from judge import verdicts as rule
from judge.load import Results, runs_frame
from judge.looks import ClaimAtLook, Look
from nin.errors import InputError
from nin.layout import GridDir
from nin.variant import Variant
from runners.grid_runs import base_digest, existing, with_additions
from runners.spec import Grid


@dataclass(frozen=True)
class SequenceOptions:
    max_seeds: int = sequential.DEFAULT_MAX_SEEDS
    seeds_per_round: int = sequential.DEFAULT_SEEDS_PER_ROUND


def check(grid: Grid, grid_dir: GridDir, options: SequenceOptions, spec: Path | str) -> None:
    """Everything wrong with a sequential run, as one line, before anything is written."""
    seeds = len(grid.seeds)
    if options.max_seeds < seeds:
        raise InputError(f"--max-seeds {options.max_seeds} is below the {seeds} seeds {spec} already has: give at "
                         f"least {seeds} (the sequence starts from the grid's seeds)")  # fmt: skip
    if options.max_seeds > sequential.MAX_SEEDS:
        raise InputError(f"--max-seeds {options.max_seeds}: at most {sequential.MAX_SEEDS} (the sequential rule is "
                         f"proved by simulation up to {sequential.MAX_SEEDS} seeds)")  # fmt: skip
    if options.seeds_per_round < 1:
        raise InputError(f"--seeds-per-round {options.seeds_per_round}: give at least 1")
    if not family(grid):
        raise InputError(f"{spec}: --until-resolved needs a difference claim this grid can test (two levels of head, "
                         f"cccp or dropout among its NiN rows), and it tests none: nothing to resolve")  # fmt: skip
    record = existing(grid_dir)
    if record is None:
        return
    if record.base_runs != base_digest(grid):
        raise InputError(f"{grid_dir.looks_path} is the sequence of another version of {spec} (its runs differ): "
                         f"use another --out to start a new sequence, or move that file away")  # fmt: skip
    design = record.design
    if (design.max_seeds, design.seeds_per_round) != (options.max_seeds, options.seeds_per_round):
        raise InputError(f"{grid_dir.looks_path} was planned with --max-seeds {design.max_seeds} --seeds-per-round "
                         f"{design.seeds_per_round} before its first look: rerun with those to continue it (a "
                         f"design changed mid-sequence would void its error budget)")  # fmt: skip


def family(grid: Grid) -> list[str]:
    """The keys of the difference claims the grid's structure tests: a sequence's family."""
    return [c.key for c in rule.testable_claims(planned_results(grid))]


def planned_results(grid: Grid) -> Results:
    """The grid's structure framed as the report frames finished runs (every run ok, outcomes placeholders): which
    claims it tests and which variants pair, before anything is trained."""
    key = grid.tune.key if grid.tune is not None else None
    records = []
    for variant in grid.variants or grid.planned():
        # Every run logs its epochs, so the training-time claims are tested: placeholders put them in the family.
        record = {**variant.config(), "variant_id": variant.id, "group_id": variant.group_id, "status": "ok",
                  "test_acc": 0.5, "train_acc": 0.5, "gap_acc": 0.0, "epochs_to_fit": 1.0,
                  "log_seconds_to_fit": 0.0}  # fmt: skip
        if variant.canvas:
            record["loc_pointing"] = 0.5
        if key is not None:  # as the report reads a tuned run: the picked value is treatment, not a setting
            record[f"tuned_{key}"] = record.pop(key)
        records.append(record)
    return Results(Path("."), grid.name, None, grid.resolved(), runs_frame(records), pd.DataFrame())


def new_record(grid: Grid, design: sequential.Design, reserved: Sequence[int]) -> looks.Sequence:
    return looks.Sequence(grid.name, base_digest(grid), tuple(grid.seeds), tuple(reserved),
                          len({v.group_id for v in grid.variants}), design)  # fmt: skip


class RunnerHost:
    """judge.sequential.Host for the runner: `train(grid, pending)` trains variants into the grid directory,
    `write(path, obj)` writes JSON atomically."""

    def __init__(self, grid: Grid, grid_dir: GridDir, sequence: looks.Sequence,
                 train: Callable[[Grid, list[Variant]], None], write: Callable[[Path, Any], None]) -> None:  # fmt: skip
        self.base, self.grid_dir, self.sequence, self.design = grid, grid_dir, sequence, sequence.design
        self.train, self.write = train, write
        self.structure = planned_results(grid)

    def ready(self, seeds: Sequence[int], taken: Sequence[Look]) -> bool:
        grid = with_additions(self.base, taken)
        pending = [v for v in grid.variants if not self.grid_dir.is_finished(v.id)]
        if pending:
            self.train(grid, pending)
        # A lost job's stand-in result is replaced by the next run: a look over it would be decided on missing runs.
        return all(self.grid_dir.is_settled(v.id) for v in grid.variants)

    def judge(self, seeds: Sequence[int], confidence: float, keys: Sequence[str]) -> dict[str, ClaimAtLook]:
        from judge.load import load_results

        results = load_results(self.grid_dir.root)
        found = sequential.judge_look(results, seeds, self.design, len(self.sequence.looks))
        return sequential.judged_claims(found, keys)

    def groups(self, keys: frozenset[str]) -> list[str]:
        return sorted(rule.claim_variants(self.structure, keys))

    def record(self, look: Look) -> None:
        self.sequence = self.sequence.with_look(look)
        self.write(self.grid_dir.looks_path, self.sequence.as_record())
        print(look_line(self.design, look), flush=True)


def look_line(design: sequential.Design, look: Look) -> str:
    resolved = len(design.family) - len(look.open)
    head = (f"look {look.look} of at most {len(design.schedule)} ({look.n_seeds} seeds): {resolved} of "
            f"{len(design.family)} claims resolved")  # fmt: skip
    if look.decision == sequential.ADD:
        return f"{head}; open: {', '.join(look.open)}; next: {look.reason}"
    return f"{head}; stop: {look.reason}"


def final_line(grid_name: str, record: looks.Sequence, trained: int) -> str:
    """The sequence in one line: resolved and open claims, runs trained against the fixed design, why it stopped."""
    spend = sequential.Spend.of(record, trained)
    state = f"stopped: {spend.last.reason}" if spend.stopped else "the sequence is not over: run the same command " \
        "to continue it"  # fmt: skip
    return (f"grid '{grid_name}': {spend.resolved} of {spend.family} claims resolved, {spend.still_open} still open "
            f"at {spend.last.n_seeds} seeds; {spend.against_fixed()}; {state}")  # fmt: skip


def run_sequence(grid: Grid, grid_dir: GridDir, options: SequenceOptions, train: Callable[[Grid, list[Variant]], None],
                 write: Callable[[Path, Any], None], ceiling: int | None) -> looks.Sequence:  # fmt: skip
    """Follow the grid's sequence from its record (a new one planned now) until a look stops it or runs are missing;
    returns the record."""
    reserved = tuple(grid.tune.seeds) if grid.tune is not None else ()
    record = existing(grid_dir)
    if record is None:
        design = sequential.plan(family(grid), len(grid.seeds), options.seeds_per_round, options.max_seeds)
        record = new_record(grid, design, reserved)
        write(grid_dir.looks_path, record.as_record())  # the design is on record before the first look
    if record.stopped:
        last = record.looks[-1]
        print(f"grid '{grid.name}': the sequence already stopped at look {last.look}: {last.reason}")
        return record
    host = RunnerHost(grid, grid_dir, record, train, write)
    sequential.follow(record.design, record.looks, grid.seeds, len(grid.variants), host, reserved, ceiling)
    return host.sequence
