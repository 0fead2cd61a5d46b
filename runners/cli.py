"""`nin-ablate`: list, run, train, report and bench an ablation grid.

Bad input of any kind ends in one line on stderr and exit code 2; nothing is written before input is valid.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from judge.sequential import DEFAULT_MAX_SEEDS, DEFAULT_SEEDS_PER_ROUND, MAX_SEEDS
from nin.arches import ARCHES
from nin.errors import InputError
from runners import EXIT_BAD_INPUT, EXIT_FAILED_RUNS, EXIT_INTERRUPTED, EXIT_OK


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (and exit 2, as argparse does)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{message} (see '{self.prog} --help')")


def _add_grid_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="grid file, e.g. ablations/quick.yaml")
    parser.add_argument("--yes", action="store_true", help="allow grids of more than 500 runs")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="replace a shared setting (or seeds) for every row, e.g. --set dataset=mnist; repeatable")


def _load_grid(args: argparse.Namespace):
    """The grid with its overrides, or one line. Torch-free: a bad or oversized grid is refused in a fraction of a
    second, before anything heavy is imported."""
    from runners.overrides import parse_overrides
    from runners.spec import DEFAULT_MAX_RUNS, load_grid

    overrides = parse_overrides(args.overrides, epochs=getattr(args, "epochs", None))
    return load_grid(args.spec, max_runs=None if args.yes else DEFAULT_MAX_RUNS, overrides=overrides)


def _listed(grid, out: str) -> list[tuple[object, dict]]:
    """(variant, what the row says) per run: the grid's runs now (runners.grid_runs.current); for a tuned grid its
    tuning runs (stage 1) and then the stage-2 runs, each arm's tuned value "to be tuned" (and no id yet) until stage
    1 in OUT/<grid> has picked it, and "not picked" where it could not."""
    from pathlib import Path

    from nin.layout import GridDir
    from runners import grid_runs, tuning

    grid_dir = GridDir(Path(out) / grid.name)
    if grid.tune is None:  # with the seeds an --until-resolved sequence in OUT added
        return [(v, {}) for v in grid_runs.current(grid, grid_dir).variants]

    plans = tuning.plan(grid, grid_dir.tuning)
    rows: list[tuple[object, dict]] = [(v, {"stage": "tuning"}) for p in plans for v in p.runs(grid.tune)]
    if tuning.finished(plans):
        picked = {p.arm_id for p in plans if p.pick is not None}
        unpicked = [v for v in grid.planned() if v.arm_id((grid.tune.key,)) not in picked]
        rows += [(v, {"stage": "grid"}) for v in grid_runs.current(grid, grid_dir, plans).variants]
        return rows + [(v, {"stage": "grid", "variant_id": None, grid.tune.key: "not picked"}) for v in unpicked]
    unknown = {"stage": "grid", "variant_id": None, grid.tune.key: "to be tuned"}
    return rows + [(v, dict(unknown)) for v in grid.planned()]


def cmd_list(args: argparse.Namespace) -> int:
    grid = _load_grid(args)
    from nin.profile import profile_variant

    rows = []
    for variant, shown in _listed(grid, args.out):  # type: ignore[assignment]
        profile = profile_variant(variant)
        rows.append(
            {
                "variant_id": variant.id,
                "group_id": variant.group_id,
                "model": variant.model,
                "arch": variant.arch,
                "head": variant.head,
                "cccp": variant.cccp,
                "dropout": variant.dropout,
                "width": variant.width,
                "dataset": variant.dataset,
                "image_size": variant.image_size,
                "lr": variant.lr,
                "epochs": variant.epochs,
                "seed": variant.seed,
                "params": profile.params,
                "macs": profile.macs,
                "flops": profile.flops,
                "uncounted_ops": profile.unsupported_ops,
                **shown,
            }
        )
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return EXIT_OK
    columns = ("variant_id", "model", "arch", "head", "cccp", "dropout", "seed", "params", "macs")
    header = ("variant_id", "model", "arch", "head", "cccp", "dropout", "seed", "params", "MMACs")
    if grid.tune is not None:  # which stage a run belongs to, and the tuned value (or that it is not known yet)
        columns, header = ("stage", *columns[:6], grid.tune.key, *columns[6:]), ("stage", *header[:6], grid.tune.key,
                                                                                 *header[6:])  # fmt: skip
    shown = [[_cell(col, row[col]) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in shown)) for i, col in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    numeric = len(columns) - 2  # params and MACs, right-aligned
    for r in shown:
        print("  ".join(c.rjust(w) if i >= numeric else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    uncounted = sorted({op for row in rows for op in row["uncounted_ops"]})
    print(
        f"{len(rows)} runs ({len({r['group_id'] for r in rows})} variants) in grid '{grid.name}'. "
        f"MMACs: millions of fvcore multiply-adds per image, forward; flops = 2 × macs."
        + (f" Not counted by fvcore (no multiply-adds): {', '.join(uncounted)}." if uncounted else "")
    )
    return EXIT_OK


def _cell(column: str, value: object) -> str:
    if value is None:
        return "-"
    if column == "params":
        return f"{value:,}"
    if column == "macs":
        return f"{value / 1e6:,.1f}"
    return str(value)


def _add_training_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs", help="results root; the grid goes to OUT/<grid name>/ (default runs)")
    parser.add_argument("--device", default="auto",
                        help="auto | cpu | cuda (every GPU) | cuda:0,cuda:1 (one worker per listed device)")
    parser.add_argument("--data-dir", default=None, help="torchvision's dataset root (default ./data)")
    parser.add_argument("--download", action="store_true", help="download missing datasets (needs internet)")
    parser.add_argument("--epochs", type=_positive_int, default=None, help="override every variant's epochs")
    parser.add_argument("--wandb", choices=("offline", "online", "disabled"), default=None,
                        help="W&B tracking (default offline, or $WANDB_MODE)")
    parser.add_argument("--wandb-project", default=None, help="W&B project (default $WANDB_PROJECT or nin-ablate)")
    parser.add_argument("--wandb-entity", default=None, help="W&B entity (default $WANDB_ENTITY)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    parser.add_argument("--cpu-threads", type=_positive_int, default=None,
                        help="torch threads per CPU worker (default: all cores, split between CPU workers)")
    parser.add_argument("--workers-per-device", type=_positive_int, default=1, metavar="N",
                        help="N local workers share each listed device (default 1); on a GPU, small nets may train "
                             "faster packed (docs/GPU.md, packing)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _run_options(args: argparse.Namespace, **extra):
    from runners.run import RunOptions

    return RunOptions(spec=args.spec, out=args.out, device=args.device, wandb=args.wandb,
                      wandb_project=args.wandb_project, wandb_entity=args.wandb_entity, data_dir=args.data_dir,
                      download=args.download, epochs=args.epochs, overrides=tuple(args.overrides), yes=args.yes,
                      progress=not args.no_progress,
                      cpu_threads=args.cpu_threads, workers_per_device=args.workers_per_device,
                      **extra)  # fmt: skip


def cmd_run(args: argparse.Namespace) -> int:
    grid = _load_grid(args)
    from runners.run import run_grid

    options = _run_options(args, executor=args.executor, ray_address=args.ray_address,
                           until_resolved=args.until_resolved, max_seeds=args.max_seeds,
                           seeds_per_round=args.seeds_per_round, slurm=tuple(args.slurm),
                           slurm_config=args.slurm_config)  # fmt: skip
    return run_grid(options, grid)


def cmd_train(args: argparse.Namespace) -> int:
    grid = _load_grid(args)
    from runners.run import run_grid

    return run_grid(_run_options(args, only=tuple(args.variant), report=False), grid)


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nin.tracking import resolve_mode
    from reports.wandb_report import write_and_log_report

    margins = _margins(args.margin)
    if args.format != "html":  # the ablation table alone, on stdout: nothing written, nothing logged
        from reports import ablation_table

        sys.stdout.write(ablation_table(Path(args.grid_dir), args.format, margins))
        return EXIT_OK
    mode = resolve_mode(args.wandb)
    report = write_and_log_report(Path(args.grid_dir), mode, args.wandb_project, args.wandb_entity, margins=margins)
    print(report.html)
    return EXIT_OK


def _margins(flags: list[str]) -> dict[str, float]:
    """--margin METRIC=VALUE flags → {metric: δ}, validated like the grid file's margins:."""
    from judge.verdicts import DEFAULT_MARGINS, parse_margins

    values: dict[str, object] = {}
    for flag in flags:
        metric, sep, text = flag.partition("=")
        if not sep or not metric:
            raise InputError(f"--margin {flag!r}: use METRIC=VALUE, e.g. --margin test_acc=0.005 "
                             f"(metrics: {', '.join(DEFAULT_MARGINS)})")  # fmt: skip
        try:
            values[metric.strip()] = float(text)
        except ValueError:
            raise InputError(f"--margin {flag!r}: {text!r} is not a number (a fraction: 0.01 = 1 accuracy point)") \
                from None  # fmt: skip
    try:
        return parse_margins(values)
    except ValueError as error:
        raise InputError(f"--margin: {error}") from None


def cmd_bench(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from bench.throughput import BenchConfig, format_text, run_bench

    config = BenchConfig(**{field.name: getattr(args, field.name) for field in fields(BenchConfig)})
    result = run_bench(config, log=lambda line: print(f"bench: {line}", file=sys.stderr, flush=True))
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
    else:
        print(format_text(result))
    return EXIT_OK


def cmd_gpu_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bench.gpu_check import CheckConfig, format_text, passed, run_check, with_redo

    config = CheckConfig(out=Path(args.out), device=args.device, tiny=args.tiny,
                         work=Path(args.work) if args.work else None)  # fmt: skip
    record = run_check(with_redo(config, args.redo))
    print(format_text(record))
    return EXIT_OK if passed(record) else EXIT_FAILED_RUNS


def cmd_estimate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bench.estimate import describe, estimate_grid
    from runners import tuning
    from runners.spec import load_grid

    grid = load_grid(args.spec, max_runs=None)
    try:
        bench = json.loads(Path(args.bench_json).read_text())
        # A tuned grid: its first round of tuning runs and its stage-2 runs (a run's time does not depend on its lr).
        runs = [*(v for arm in grid.arms for v in tuning.initial_runs(grid, arm)), *grid.planned()]
        result = estimate_grid(grid.name, runs, bench, args.devices)
        print(describe(result, bench))
    except (OSError, ValueError, KeyError) as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise InputError(f"{args.bench_json}: not a 'nin-ablate bench --json' result ({why})") from None
    return EXIT_OK


def cmd_walltime(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    import runners.run
    from bench.walltime import format_text, measure

    run_args = args.run_args
    report_step = (("fixed", "report", runners.run, "_write_report"),)

    def timed(out: Path) -> dict:
        return measure(args.spec, out, run_args, main, report_step)

    if args.out:
        result = timed(Path(args.out))
    else:
        with tempfile.TemporaryDirectory(prefix="nin-walltime-", ignore_cleanup_errors=True) as tmp:
            result = timed(Path(tmp))
    print(json.dumps(result, indent=1) if args.json else format_text(result))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nin-ablate", description=__doc__.splitlines()[0], allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub_parser = sub.add_parser

    def add_parser(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub_parser(name, allow_abbrev=False, **kwargs)  # --epoch must not silently mean --epochs

    sub.add_parser = add_parser  # type: ignore[method-assign]

    p = sub.add_parser("list", help="every variant of a grid with its params and MACs; trains nothing")
    _add_grid_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of objects instead of a table")
    p.add_argument("--out", default="runs",
                   help="results root of 'nin-ablate run' (default runs): where a grid with tune: finds its picks")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("run", help="train every unfinished variant of a grid, then write its report")
    _add_grid_args(p)
    _add_training_args(p)
    p.add_argument("--executor", choices=("local", "ray", "slurm"), default="local",
                   help="local: one worker per device; ray: one Ray task per variant; slurm: job arrays through "
                        "submitit, one job per variant (per --device list), docs/SLURM.md")
    p.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="a Slurm job setting (timeout_min, partition, gpus_per_node, cpus_per_task, mem_gb, "
                        "array_parallelism, additional_parameters, setup, ...); repeatable, over --slurm-config")
    p.add_argument("--slurm-config", default=None, metavar="FILE", help="Slurm job settings as a YAML mapping")
    p.add_argument("--ray-address", default=None, metavar="HEAD:PORT",
                   help="join the Ray cluster whose head 'ray start --head' started there; default: start one")
    p.add_argument("--until-resolved", action="store_true",
                   help="after the grid's seeds, add seeds only to the variants of claims still open, look by look, "
                        "judged by a sequential rule that keeps the report's 5%% error budget (docs/STATISTICS.md)")
    p.add_argument("--max-seeds", type=_positive_int, default=None, metavar="N",
                   help=f"with --until-resolved: stop at N seeds (default {DEFAULT_MAX_SEEDS}, at most {MAX_SEEDS})")
    p.add_argument("--seeds-per-round", type=_positive_int, default=None, metavar="K",
                   help=f"with --until-resolved: seeds added per look (default {DEFAULT_SEEDS_PER_ROUND})")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("train", help="train one variant of a grid into the grid's results directory")
    _add_grid_args(p)
    _add_training_args(p)
    p.add_argument("--variant", action="append", required=True, metavar="ID",
                   help="variant id (or a unique prefix) from 'nin-ablate list'; repeatable")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("report", help="tables, plots and report.html from a results directory OUT/<grid name>")
    p.add_argument("grid_dir", help="the directory 'nin-ablate run' wrote, e.g. runs/quick")
    p.add_argument("--wandb", choices=("offline", "online", "disabled"), default=None,
                   help="log the report as a W&B run (default offline, or $WANDB_MODE)")
    p.add_argument("--wandb-project", default=None, help="W&B project (default $WANDB_PROJECT or nin-ablate)")
    p.add_argument("--wandb-entity", default=None, help="W&B entity (default $WANDB_ENTITY)")
    p.add_argument("--format", choices=("html", "md", "tex"), default="html",
                   help="html: write OUT/<grid>/report/ and print the page's path; md or tex: print the ablation "
                        "table to stdout and write nothing")
    p.add_argument("--margin", action="append", default=[], metavar="METRIC=VALUE",
                   help="this report's margin for a metric's claims, overriding the grid's margins: (repeatable; "
                        "a fraction: --margin test_acc=0.005 is half an accuracy point; epochs_to_fit in epochs); "
                        "every verdict it changes says the margin was chosen after the runs")
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("bench", help="training throughput of the harness against a d2l-style reference loop")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--arch", choices=tuple(ARCHES), default="d2l", help="NiN preset (default d2l, the seeds' net)")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1.0)")
    p.add_argument("--image-size", type=_positive_int, default=None, help="input size (default: the arch's, 224)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="training batch (default 128)")
    p.add_argument("--steps", type=_positive_int, default=5, help="timed steps per window and path (default 5)")
    p.add_argument("--windows", type=_positive_int, default=3, help="timed windows per path; median (default 3)")
    p.add_argument("--warmup", type=_positive_int, default=None, help="untimed steps per path (default 1 CPU, 10 GPU)")
    p.add_argument("--workers", type=int, default=None, help="reference DataLoader workers (default min(4, cores))")
    p.add_argument("--compile", action="store_true", help="torch.compile the harness's model (paths b and c)")
    p.add_argument("--data-dir", default=None,
                   help="torchvision root with FashionMNIST (default: synthetic Fashion-MNIST-shaped files)")
    p.add_argument("--wandb", choices=("offline", "disabled"), default="offline",
                   help="tracker mode in the fixed-cost measurement (default offline)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(handler=cmd_bench)

    p = sub.add_parser("gpu-check", help="what works on a GPU and how fast, in one call: OUT/gpu-check.json + .txt")
    p.add_argument("--out", required=True, help="folder for gpu-check.json and .txt (a rerun skips what passed)")
    p.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (the dry run; default cuda)")
    p.add_argument("--tiny", action="store_true", help="toy sizes: the CPU dry run of the suite (docs/GPU.md)")
    p.add_argument("--redo", default=None, metavar="STEP[,STEP]", help="run these steps again even if they passed")
    p.add_argument("--work", default=None, help="where the check's runs train (default: a temp dir, removed after)")
    p.set_defaults(handler=cmd_gpu_check)

    p = sub.add_parser("walltime", help="run a grid with a timer around every piece: where its wall time goes")
    p.add_argument("spec", help="grid file, e.g. ablations/quick.yaml")
    p.add_argument("--out", default=None, help="results root (default: a temp dir, removed after)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(handler=cmd_walltime, run_args=[])  # what follows `--` goes to 'nin-ablate run' (see main)

    p = sub.add_parser("estimate", help="a grid's wall time from one 'nin-ablate bench --json' result")
    p.add_argument("spec", help="grid file, e.g. ablations/paper.yaml")
    p.add_argument("bench_json", help="the output of 'nin-ablate bench --json'")
    p.add_argument("--devices", type=_positive_int, default=1, help="devices training in parallel (default 1)")
    p.set_defaults(handler=cmd_estimate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if argv[:1] == ["walltime"] and "--" in argv:  # `nin-ablate walltime SPEC [opts] -- RUN ARGS`
        argv, passthrough = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    try:
        args = build_parser().parse_args(argv)
        if passthrough:
            args.run_args = passthrough
        return args.handler(args)
    except InputError as exc:
        print(f"nin-ablate: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("nin-ablate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into head & co.: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
