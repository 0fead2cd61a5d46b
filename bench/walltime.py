"""Where a grid's wall time goes: `nin-ablate run` in this process, with a timer around every piece of a run.

    nin-ablate walltime SPEC [--out DIR] [--json] [-- RUN ARGS...]
    nin-ablate walltime ablations/quick.yaml -- --set 'seeds=[0]' --wandb offline

The runner hands in its own entry point and its report step (bench knows nothing of grids or runners).
The grid runs exactly as `nin-ablate run SPEC --device cpu --no-progress RUN ARGS` would (one device: in-process),
into a fresh results directory (a temp dir unless --out). Each piece's time is exclusive: a timed call inside another
counts for the inner piece only. The pieces fall into three parts:

    training    Trainer.train_epoch: the optimizer steps, input pipeline included
    evaluation  Trainer.evaluate: the test pass every epoch, the train-set pass at the end; class maps with a canvas
    fixed       dataset load and device copy, model build, fvcore profile, peak probe, W&B start/log/finish,
                checkpoint, metrics and result writes, the report

and `other` is the rest of the wall time (grid parsing, lock, runner bookkeeping, Python between the pieces).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

PARTS = ("training", "evaluation", "fixed", "other")


Piece = tuple[str, str, Any, str]  # (part, piece, owner, attribute)


def _pieces(extra: tuple[Piece, ...] = ()) -> list[Piece]:
    """(part, piece, owner, attribute) of everything timed, plus the caller's `extra`. Owners are looked up where
    callers find them."""
    import nin.data
    import nin.device
    import nin.pipeline
    import nin.store
    import nin.tracking
    import nin.train

    pieces = [
        ("training", "train_epoch", nin.train.Trainer, "train_epoch"),
        ("evaluation", "evaluate", nin.train.Trainer, "evaluate"),
        ("evaluation", "class_maps", nin.train, "_localise"),  # variants with a canvas only
        ("fixed", "dataset_load", nin.data, "load_dataset"),
        ("fixed", "device_data", nin.pipeline.DeviceData, "from_variant"),
        ("fixed", "model_build", nin.train.Trainer, "__init__"),
        ("fixed", "profile", nin.train, "profile_variant"),
        ("fixed", "peak_probe", nin.device, "probe_peak"),  # once per machine: the cache file holds it after
        ("fixed", "checkpoint_write", nin.store, "save_checkpoint"),
        ("fixed", "checkpoint_read", nin.store, "load_checkpoint"),
        ("fixed", "metrics_write", nin.store, "write_metrics"),
        ("fixed", "result_write", nin.store, "write_json"),
        *extra,
    ]
    for name in ("WandbTracker", "NullTracker"):
        tracker = getattr(nin.tracking, name, None)
        for method in ("start", "log_epoch", "finish"):
            pieces.append(("fixed", f"tracker_{method}", tracker, method))
    return [piece for piece in pieces if piece[2] is not None and piece[3] in vars(piece[2])]


class Timers:
    """Exclusive seconds and call counts per piece."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list[float]] = []  # per open call: [start, seconds of timed calls inside it]

    def wrap(self, piece: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [time.perf_counter(), 0.0]
            self._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - frame[0]
                self._stack.pop()
                if self._stack:
                    self._stack[-1][1] += elapsed
                self.seconds[piece] = self.seconds.get(piece, 0.0) + elapsed - frame[1]
                self.calls[piece] = self.calls.get(piece, 0) + 1

        return timed


@contextmanager
def timing(timers: Timers, extra: tuple[Piece, ...] = ()) -> Iterator[dict[str, str]]:
    """Every piece wrapped while the block runs, restored after; yields piece → part."""
    saved, parts = [], {}
    for part, piece, owner, attribute in _pieces(extra):
        original = vars(owner)[attribute]
        if isinstance(original, classmethod):
            replacement: Any = classmethod(timers.wrap(piece, original.__func__))
        else:
            replacement = timers.wrap(piece, original)
        setattr(owner, attribute, replacement)
        saved.append((owner, attribute, original))
        parts[piece] = part
    try:
        yield parts
    finally:
        for owner, attribute, original in reversed(saved):
            setattr(owner, attribute, original)


def measure(
    spec: str, out: Path, run_args: list[str], cli_main: Callable[[list[str]], int], extra: tuple[Piece, ...] = ()
) -> dict[str, Any]:
    """Run `cli_main(["run", spec, ...])` with every piece timed; `extra` adds the caller's own pieces."""
    timers = Timers()
    load_before = os.getloadavg()
    args = ["run", spec, "--out", str(out), "--device", "cpu", "--no-progress", *run_args]
    with timing(timers, extra) as parts, redirect_stdout(sys.stderr):  # the runner's own lines stay off --json's stdout
        start = time.perf_counter()
        code = cli_main(args)
        wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"bench.walltime: `nin-ablate {' '.join(args)}` exited {code}")
    by_part = dict.fromkeys(PARTS, 0.0)
    for piece, seconds in timers.seconds.items():
        by_part[parts[piece]] += seconds
    by_part["other"] = wall - sum(by_part[p] for p in PARTS if p != "other")
    runs = sorted(out.glob("*/runs/*/result.json"))
    return {
        "spec": spec,
        "command": "nin-ablate " + " ".join(args),
        "wall_seconds": wall,
        "parts_seconds": by_part,
        "parts_share": {part: seconds / wall for part, seconds in by_part.items()},
        "pieces": {
            piece: {"part": parts[piece], "seconds": timers.seconds[piece], "calls": timers.calls[piece],
                    "share": timers.seconds[piece] / wall}
            for piece in sorted(timers.seconds, key=timers.seconds.get, reverse=True)
        },  # fmt: skip
        "runs": len(runs),
        "threads": torch.get_num_threads(),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }


def format_text(r: dict[str, Any]) -> str:
    lines = [f"{r['command']}: {r['runs']} runs, wall {r['wall_seconds']:.1f} s"]
    for part in PARTS:
        lines.append(f"  {part:<11} {r['parts_seconds'][part]:8.2f} s  {r['parts_share'][part]:6.1%}")
    lines.append("pieces (exclusive seconds, calls):")
    for piece, p in r["pieces"].items():
        lines.append(f"  {piece:<18} {p['part']:<11} {p['seconds']:8.2f} s  {p['share']:6.1%}  x{p['calls']}")
    load = r["load_average"]
    lines.append(f"load average (1 min) before/after: {load['before'][0]:.2f} / {load['after'][0]:.2f}")
    return "\n".join(lines)
