"""`nin-ablate run`: validate everything, then train every unfinished variant of a grid and write its report."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from tqdm.auto import tqdm

from judge import looks
from nin import store
from nin.errors import InputError
from nin.layout import GridDir, read_result
from nin.tracking import resolve_mode
from runners import EXIT_FAILED_RUNS, EXIT_OK, grid_runs, slurm, tuning, until_resolved
from runners.executor import run_local, run_ray
from runners.lock import GridLock
from runners.overrides import parse_overrides
from runners.ray_connect import connect_ray
from runners.spec import DEFAULT_MAX_RUNS, MAX_RUNS, Grid, load_grid
from runners.worker import RunContext

if TYPE_CHECKING:
    from nin.variant import Variant


@dataclass(frozen=True)
class RunOptions:
    spec: Path
    out: Path = Path("runs")
    device: str = "auto"
    executor: str = "local"
    ray_address: str | None = None
    wandb: str | None = None
    wandb_project: str | None = None
    wandb_entity: str | None = None
    data_dir: str | None = None
    download: bool = False
    epochs: int | None = None
    overrides: tuple[str, ...] = ()  # --set KEY=VALUE pairs, as typed
    yes: bool = False
    progress: bool = True
    report: bool = True
    cpu_threads: int | None = None
    only: tuple[str, ...] = ()  # variant ids (or unique prefixes) to train; empty = the whole grid
    until_resolved: bool = False  # then seeds only where a verdict is open (runners.until_resolved)
    max_seeds: int | None = None  # --max-seeds (default sequential.DEFAULT_MAX_SEEDS)
    seeds_per_round: int | None = None  # --seeds-per-round (default sequential.DEFAULT_SEEDS_PER_ROUND)
    workers_per_device: int = 1  # local workers sharing each listed device (small nets: `nin-ablate gpu-check`)
    slurm: tuple[str, ...] = ()  # --slurm KEY=VALUE pairs (runners.slurm.SlurmSettings), over --slurm-config
    slurm_config: str | None = None


def parse_devices(spec: str, workers_per_device: int = 1) -> list[torch.device]:
    """auto | cpu | cuda (every visible GPU) | cuda:0,cuda:1 | cpu,cpu (several CPU workers); one worker per entry,
    or `workers_per_device` workers sharing each."""
    from nin.device import resolve_device

    if spec in ("auto", "cuda"):
        if torch.cuda.is_available():
            devices = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        else:
            if spec == "cuda":
                resolve_device("cuda")  # raises the clear no-GPU error
            devices = [torch.device("cpu")]
        return [d for d in devices for _ in range(workers_per_device)]
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise InputError("--device is empty: use auto, cpu, cuda or a list such as cuda:0,cuda:1")
    devices = [resolve_device(p) for p in parts]
    gpus = [d for d in devices if d.type == "cuda"]
    if len(set(gpus)) != len(gpus):
        raise InputError(f"--device {spec} lists a GPU twice: to share a GPU between workers, list it once and "
                         f"add --workers-per-device N")  # fmt: skip
    return [d for d in devices for _ in range(workers_per_device)]


def run_grid(options: RunOptions, grid: Grid | None = None) -> int:
    """check → tune → train → grow → report. `grid`: `options.spec` already loaded with `options`' overrides (the
    CLI loads it before torch is imported)."""
    run = _check(options, grid)  # everything that can be wrong with the input, before the first byte is written
    with GridLock(run.grid_dir):
        store.remove_temp_files(run.grid_dir.root)  # a runner killed while writing spec.yaml left its temp file
        slurm.forget_lost(run.grid_dir)  # a variant whose Slurm job was lost trains again, from its checkpoint
        context = _context(run)
        plans: list[tuning.ArmPlan] | None = None
        if run.grid.tune is not None:
            tuned = _tune_stage(run, context)
            if tuned is None:
                return EXIT_FAILED_RUNS
            context, plans = tuned
        trained = _train_stage(run, plans, context)
        base = grid_runs.base(run.grid, plans)
        record = _grow_stage(run, base, context) if run.sequence is not None else None
        if record is not None:
            grown = grid_runs.with_additions(base, record.looks)
            trained = replace(trained, grid=grown, selected=list(grown.variants))
            _write_spec(run.grid_dir, trained.grid)
        report_path = _write_report(run.grid_dir, run.wandb_mode, options) if options.report else None
    return _close(run, trained, record, [p for p in plans or () if p.pick is None], report_path)


@dataclass(frozen=True)
class _Checked:
    """A run's input, checked: the grid, where it goes, on what, and the sequence's settings (None without one)."""

    options: RunOptions
    grid: Grid
    grid_dir: GridDir
    devices: list[torch.device]
    wandb_mode: str
    sequence: until_resolved.SequenceOptions | None
    slurm: slurm.SlurmSettings | None  # --executor slurm's job settings, read once


@dataclass(frozen=True)
class _Trained:
    """The train stage's runs: the grid as it stands, the runs selected (all, or --variant's) and how many of them
    were finished before this command."""

    grid: Grid
    selected: list[Variant]
    finished_before: int


def _check(options: RunOptions, grid: Grid | None) -> _Checked:
    if grid is None:
        overrides = parse_overrides(options.overrides, epochs=options.epochs)
        grid = load_grid(options.spec, max_runs=None if options.yes else DEFAULT_MAX_RUNS, overrides=overrides)
    if options.executor not in ("local", "ray", "slurm"):
        raise InputError(f"--executor must be local, ray or slurm, got {options.executor!r}")
    if options.executor != "slurm" and (options.slurm or options.slurm_config):
        raise InputError("--slurm and --slurm-config set Slurm jobs: add --executor slurm, or drop them")
    if options.workers_per_device > 1 and options.executor != "local":
        raise InputError("--workers-per-device shares a device between local workers: use it with --executor local")
    slurm_settings = slurm.load_settings(options.slurm, options.slurm_config) if options.executor == "slurm" else None
    # With Slurm, --device names what each job gets on its node, not what the login node has.
    devices = (
        slurm.job_devices(options.device, slurm_settings)
        if slurm_settings
        else parse_devices(options.device, options.workers_per_device)
    )
    wandb_mode = resolve_mode(options.wandb)
    if not options.download:
        _check_data(grid, options)
    if grid.tune is not None and options.only:
        raise InputError(
            f"{options.spec}: --variant is not available for a grid with tune: (which runs it has follows the picks): "
            f"use 'nin-ablate run'"
        )
    if options.only:
        _select(grid.variants, options.only, options.spec)  # an unknown id is one line now, not after tuning
    sequence = _sequence_options(options)
    grid_dir = GridDir(Path(options.out) / grid.name)
    if sequence is not None:
        until_resolved.check(grid, grid_dir, sequence, options.spec)
    if options.executor == "ray" and options.ray_address:
        connect_ray(options.ray_address)  # an unreachable cluster is bad input: one line, nothing written
    if slurm_settings is not None:
        slurm.check(slurm_settings)  # no controller or an unknown partition: one line, nothing written
    else:
        slurm.refuse_live_jobs(grid_dir)  # runs an earlier --executor slurm left queued are not trained twice
    return _Checked(options, grid, grid_dir, devices, wandb_mode, sequence, slurm_settings)


def _check_data(grid: Grid, options: RunOptions) -> None:
    """Decoded, not just found: a file in the wrong shape is one line here, not a failure per variant. The loader
    caches per process, so the in-process executor reuses this copy. A validation fraction that leaves a class empty
    on either side of the split is bad input too, and is known once the labels are."""
    from nin.data import load_dataset, with_validation

    planned = grid.planned()
    for dataset in sorted({v.dataset for v in planned}):
        data = load_dataset(dataset, options.data_dir)
        for fraction in sorted({v.validation for v in planned if v.dataset == dataset} - {None}):
            try:
                with_validation(data, fraction)
            except InputError as exc:
                raise InputError(f"{options.spec}: validation: {exc}") from None


def _context(run: _Checked) -> RunContext:
    options = run.options
    return RunContext(
        grid_dir=run.grid_dir.root,
        grid_name=run.grid.name,
        data_dir=options.data_dir,
        download=options.download,
        wandb_mode=run.wandb_mode,
        wandb_project=options.wandb_project,
        wandb_entity=options.wandb_entity,
        progress=options.progress,
        cpu_threads=options.cpu_threads,
    )


def _tune_stage(run: _Checked, context: RunContext) -> tuple[RunContext, list[tuning.ArmPlan]] | None:
    """Stage 1 of a grid with tune:, and the context its picked runs train in; None when the picks could not be
    made."""
    grid = run.grid
    # spec.yaml lists no run until the picks exist: which runs the grid has depends on them.
    _write_spec(run.grid_dir, grid)
    plans = _tune(run, context)
    if plans is None:
        return None
    return replace(context, tuned=(grid.tune.key,)), plans  # type: ignore[union-attr]


def _train_stage(run: _Checked, plans: list[tuning.ArmPlan] | None, context: RunContext) -> _Trained:
    """The grid's runs as they stand (a tuned grid's at its picks, with the seeds earlier looks added), each
    unfinished one trained."""
    grid = grid_runs.current(run.grid, run.grid_dir, plans)
    options, grid_dir = run.options, run.grid_dir
    selected = _select(grid.variants, options.only, options.spec) if options.only else list(grid.variants)
    _write_spec(grid_dir, grid)
    stale = grid_dir.stale_runs({v.id for v in grid.variants})
    if stale:
        print(
            f"{len(stale)} run(s) in {grid_dir.runs} are from an earlier version of this grid and are left "
            f"out of it: {', '.join(stale[:5])}{' ...' if len(stale) > 5 else ''}",
            file=sys.stderr,
        )
    finished = [v for v in selected if grid_dir.is_finished(v.id)]
    pending = [v for v in selected if not grid_dir.is_finished(v.id)]
    resuming = sum(grid_dir.has_checkpoint(v.id) for v in pending)
    if not pending:
        print(f"all {len(selected)} runs of grid '{grid.name}' are already finished; nothing to train")
    else:
        note = f", {resuming} resuming from a checkpoint" if resuming else ""
        print(
            f"grid '{grid.name}': {len(pending)} of {len(selected)} runs to train on "
            f"{', '.join(map(str, run.devices))}{note}; results in {grid_dir.root}"
        )
    _train(pending, len(selected), len(finished), context, run, f"grid {grid.name}")
    return _Trained(grid, selected, len(finished))


def _grow_stage(run: _Checked, base: Grid, context: RunContext) -> looks.Sequence:
    """--until-resolved: look, add seeds where a claim is open, train them, look again; the record of the looks."""
    assert run.sequence is not None
    grid_dir, options = run.grid_dir, run.options

    def train_more(grown: Grid, runs: list[Variant]) -> None:
        _write_spec(grid_dir, grown)  # spec.yaml lists the added runs before any of them trains
        done = len(grown.variants) - len(runs)
        _train(runs, len(grown.variants), done, context, run, f"grid {base.name}")

    ceiling = MAX_RUNS if options.yes else DEFAULT_MAX_RUNS
    return until_resolved.run_sequence(base, grid_dir, run.sequence, train_more, store.write_json, ceiling)


def _close(
    run: _Checked,
    trained: _Trained,
    record: looks.Sequence | None,
    unpicked: list[tuning.ArmPlan],
    report_path: Path | None,
) -> int:
    """The last line(s) and the exit code: non-zero while a run failed or is missing, an arm is unpicked or a
    sequence is still open."""
    grid, selected, grid_dir = trained.grid, trained.selected, run.grid_dir
    total = Counter(_status(grid_dir, v.id) for v in selected if grid_dir.is_finished(v.id))
    where = f"; report: {report_path}" if report_path else ""
    print(
        f"grid '{grid.name}': {total['ok']} ok, {total['diverged']} diverged, {total['failed']} failed of "
        f"{len(selected)} runs ({trained.finished_before} were already done){where}"
    )
    open_sequence = False
    if record is not None and record.looks:
        print(until_resolved.final_line(grid.name, record, len(grid.variants)))
        open_sequence = not record.stopped
    missing = len(selected) - sum(total.values())
    return EXIT_FAILED_RUNS if total["failed"] or missing or unpicked or open_sequence else EXIT_OK


def _write_spec(grid_dir: GridDir, grid: Grid) -> None:
    store.atomic_write_bytes(grid_dir.spec_path, yaml.safe_dump(grid.resolved(), sort_keys=False).encode())


def _sequence_options(options: RunOptions) -> until_resolved.SequenceOptions | None:
    """--until-resolved's settings, or None without it (then --max-seeds and --seeds-per-round are refused)."""
    if not options.until_resolved:
        for flag, value in (("--max-seeds", options.max_seeds), ("--seeds-per-round", options.seeds_per_round)):
            if value is not None:
                raise InputError(f"{flag} sets how far --until-resolved may go: add --until-resolved, or drop {flag}")
        return None
    if options.only:
        raise InputError("--until-resolved decides which runs the grid trains: it cannot take --variant")
    defaults = until_resolved.SequenceOptions()
    return until_resolved.SequenceOptions(
        max_seeds=defaults.max_seeds if options.max_seeds is None else options.max_seeds,
        seeds_per_round=defaults.seeds_per_round if options.seeds_per_round is None else options.seeds_per_round,
    )


def _train(
    pending: Sequence[Variant],
    total: int,
    done: int,
    context: RunContext,
    run: _Checked,
    what: str,
) -> list[dict[str, Any]]:
    """Train `pending` (of `total` runs, `done` already finished) into context.grid_dir with the chosen executor."""
    options, devices = run.options, run.devices
    results: list[dict[str, Any]] = []
    with tqdm(
        total=total,
        initial=done,
        desc=what,
        unit="run",
        disable=None if options.progress and pending else True,
        position=0,
        dynamic_ncols=True,
    ) as bar:

        def on_result(result: dict[str, Any]) -> None:
            results.append(result)
            bar.update(1)

        try:
            if pending and options.executor == "ray":
                run_ray(pending, context, devices, on_result, address=options.ray_address)
            elif pending and run.slurm is not None:
                slurm.run_slurm(pending, context, devices, on_result, run.slurm)
            elif pending:
                run_local(pending, context, devices, on_result)
        except KeyboardInterrupt:
            bar.close()
            if run.slurm is not None:  # run_slurm said which jobs stay queued
                raise
            print(
                f"nin-ablate: interrupted after {done + len(results)} of {total} runs of {what}; "
                f"the epoch in flight is lost, nothing else. Run the same command to resume.",
                file=sys.stderr,
            )
            raise
    return results


def _tune(run: _Checked, context: RunContext) -> list[tuning.ArmPlan] | None:
    """Stage 1: train the tuning runs round by round (a widening adds a round) until every arm has its pick;
    None when runs it trained are left without their outcome (a worker died, a Slurm job was lost), so that
    nothing is picked from part of them."""
    grid, grid_dir = run.grid, run.grid_dir
    assert grid.tune is not None
    tune, layout = grid.tune, grid_dir.tuning
    # Ordinary runs in their own GridDir: resumed, isolated and tracked (W&B group <grid>-tuning) like the grid's.
    tuning_context = replace(context, grid_dir=layout.root, grid_name=f"{grid.name}-tuning")
    tried: set[str] = set()
    while True:
        plans = tuning.plan(grid, layout)
        # Written before every round, so that each widening is on record before its runs, and all before stage 2.
        tuning.write_record(grid, grid_dir, plans)
        pending = [v for p in plans for v in p.pending]
        if not pending:
            break
        if tried & {v.id for v in pending}:
            print(
                f"grid '{grid.name}': {len(pending)} tuning run(s) ended without their outcome (a worker stopped, or "
                f"Slurm lost the job: its result.json says why); nothing is picked from part of the candidates. "
                f"Run the same command to train them again.",
                file=sys.stderr,
            )
            return None
        tried |= {v.id for v in pending}
        total = sum(len(p.runs(tune)) for p in plans)
        resuming = sum(layout.has_checkpoint(v.id) for v in pending)
        note = f", {resuming} resuming from a checkpoint" if resuming else ""
        print(
            f"grid '{grid.name}': tuning {tune.key}: {len(pending)} of {total} tuning runs to train on "
            f"{', '.join(map(str, run.devices))}{note}; results in {layout.root}"
        )
        _train(pending, total, total - len(pending), tuning_context, run, f"tuning {grid.name}")
    stale = layout.stale_runs({v.id for p in plans for v in p.runs(tune)})
    if stale:
        print(
            f"{len(stale)} tuning run(s) in {layout.runs} are of candidates this grid no longer has and are left out "
            f"of the picks: {', '.join(stale[:5])}{' ...' if len(stale) > 5 else ''}",
            file=sys.stderr,
        )
    for p in plans:
        print(_pick_line(tune, p), file=sys.stderr if p.pick is None or p.edge else sys.stdout)
    print(f"grid '{grid.name}': the picks and every candidate's scores are in {grid_dir.tuning_path}")
    return plans


def _pick_line(tune: tuning.Tune, plan: tuning.ArmPlan) -> str:
    if plan.pick is None:
        return f"{plan.arm_id}: {tune.key} not picked, its stage-2 runs are left out: {plan.problem}"
    chosen = next(c for c in plan.scored if c.value == plan.pick)
    values = ", ".join(f"{v:g}" for v in plan.candidates)
    line = (
        f"{plan.arm_id}: {tune.key} {plan.pick:g} (mean {tune.pick} {chosen.mean:.4g} over {len(tune.seeds)} "
        f"tuning seeds; candidates {values})"
    )
    return line + (f"; still at the {plan.edge} edge: {plan.edge_note}" if plan.edge else "")


def _select(variants, wanted: tuple[str, ...], spec: Path) -> list:
    chosen = []
    for name in wanted:
        matches = [v for v in variants if v.id == name] or [v for v in variants if v.id.startswith(name)]
        if len(matches) != 1:
            problem = "matches no variant" if not matches else f"matches {len(matches)} variants"
            raise InputError(f"--variant {name} {problem} of {spec}: copy an id from 'nin-ablate list {spec}'")
        chosen.append(matches[0])
    return chosen


def _status(grid_dir: GridDir, variant_id: str) -> str:
    try:
        return read_result(grid_dir.result_path(variant_id)).get("status", "failed")
    except (OSError, ValueError):
        return "failed"


def _write_report(grid_dir: GridDir, wandb_mode: str, options: RunOptions) -> Path | None:
    """The report is a view of the results: if it cannot be written, the results still stand."""
    try:
        from reports.wandb_report import write_and_log_report

        return write_and_log_report(grid_dir.root, wandb_mode, options.wandb_project, options.wandb_entity).html
    except Exception as exc:  # reported, never fatal for the training results
        print(f"nin-ablate: warning: the report could not be written: {exc}", file=sys.stderr)
        return None
