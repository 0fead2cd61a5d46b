"""`nin-ablate bench`: training throughput of the harness against a d2l-style reference loop, in one process.

Three paths train the same network on the same data, window by window in rotating order, so that whatever else
the machine does falls on all of them alike:
  (a) reference: d2l's loop (PIL images, per-image Resize + ToTensor in DataLoader workers, fp32 NCHW, SGD), under
                 glibc's default allocator settings, as d2l's users run it;
  (b) harness:   DeviceData (uint8 on the device, batched resize/normalize) feeding Trainer.train_epoch;
  (c) ceiling:   the same Trainer.train_epoch on one pre-made device batch, repeated (no input pipeline at all).
A fourth path times the harness's eval pass (forward only), which every epoch of a real run also pays.
Each path runs warm-up steps first (excluded), and every window starts with untimed steps: the reference's fresh
loader pass, one step (one eval batch) of the others, whose kept memory (nin.host_memory) the reference's window
handed back. A window's time ends with a device sync; the median window counts.
"""

from __future__ import annotations

import itertools
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench.fixed_cost import PER_VARIANT_TARGET_S, measure_fixed_costs
from bench.reference import ReferenceLoop, d2l_loader, default_workers
from bench.synthetic import write_fashion_like
from nin import host_memory
from nin.device import cpu_model, device_name, model_flops_utilization, peak_flops, resolve_device, synchronize
from nin.errors import InputError
from nin.pipeline import DeviceData
from nin.profile import profile_variant
from nin.train import Trainer, eval_batch_size, variant_settings
from nin.variant import Variant

PATHS = ("reference", "harness", "ceiling", "eval")
SYNTHETIC_NOTE = (
    "synthetic Fashion-MNIST-shaped data (random uint8 28x28, 60000 train / 10000 test, 10 classes) written as IDX "
    "files and read through torchvision's FashionMNIST class: no dataset can be downloaded here"
)
# The targets, for the seed NiN at 224 px and batch 128. CPU MFU: against the measured peak of the precision
# used (bf16 only where native: AMX or AVX512-BF16).
TARGETS = {"cpu": {"speedup": 4.0, "overhead": 0.15}, "cuda": {"speedup": 15.0, "overhead": 0.15, "mfu": 0.35}}
CPU_MFU_TARGETS = {"fp32": 0.80, "bf16": 0.75}


@dataclass(frozen=True)
class BenchConfig:
    device: str = "auto"
    arch: str = "d2l"
    width: float = 1.0
    image_size: int | None = None  # None: the arch's (224 for d2l)
    batch_size: int = 128
    steps: int = 5  # timed steps per window and path
    windows: int = 3
    warmup: int | None = None  # untimed steps per path before the first window; None: 1 on CPU, 10 on CUDA
    workers: int | None = None  # reference DataLoader workers; None: min(4, cores) as d2l
    compile: bool = False  # torch.compile the harness's model (paths b, c and eval)
    data_dir: str | None = None  # torchvision root holding FashionMNIST; None: synthetic files in a temp dir
    wandb: str = "offline"  # tracker mode for the fixed-cost measurement


def bench_variant(config: BenchConfig) -> Variant:
    """The variant the bench trains: the seeds' NiN (or the arch asked for) on Fashion-MNIST, d2l's SGD."""
    from pydantic import ValidationError

    fields: dict[str, Any] = dict(arch=config.arch, width=config.width, dataset="fashion-mnist",
                                  batch_size=config.batch_size, compile=config.compile)  # fmt: skip
    if config.image_size is not None:
        fields["image_size"] = config.image_size
    try:
        return Variant(**fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = "".join(f"--{part}: ".replace("_", "-") for part in error["loc"])
        raise InputError(f"bench: {where}{error['msg'].removeprefix('Value error, ')}") from None


class _Window:
    """Times `steps` steps of one path: sync, clock, run, sync, clock; all of it under `memory` (the allocator
    settings the path runs with)."""

    def __init__(
        self,
        device: torch.device,
        run: Callable[[int, int], Callable[[], None]],
        memory: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        self.device, self.run, self.memory = device, run, memory

    def __call__(self, steps: int, index: int) -> float:
        with self.memory():
            timed = self.run(steps, index)  # untimed set-up of this window
            synchronize(self.device)
            start = time.perf_counter()
            timed()
            synchronize(self.device)
            return time.perf_counter() - start


def _reference(loop: ReferenceLoop, lead_in: int) -> Callable[[int, int], Callable[[], None]]:
    def prepare(steps: int, index: int) -> Callable[[], None]:
        batches = loop.batches()
        # A fresh pass starts its workers: the first batches (one per worker) come after the start-up, so they
        # run untimed; d2l pays that start-up once per epoch of ~470 batches.
        for x, y in itertools.islice(batches, lead_in):
            loop.step(x, y)

        def timed() -> None:
            for x, y in itertools.islice(batches, steps):
                loop.step(x, y)

        return timed

    return prepare


def _harness(trainer: Trainer, data: DeviceData, batch_size: int) -> Callable[[int, int], Callable[[], None]]:
    def prepare(steps: int, index: int) -> Callable[[], None]:
        batches = data.train_batches(batch_size, 0, index)
        trainer.train_step(*next(batches))  # untimed: the step that grows the heap back
        return lambda: trainer.train_epoch(itertools.islice(batches, steps), index)

    return prepare


def _ceiling(trainer: Trainer, batch: tuple[torch.Tensor, torch.Tensor]) -> Callable[[int, int], Callable[[], None]]:
    def prepare(steps: int, index: int) -> Callable[[], None]:
        trainer.train_step(*batch)
        return lambda: trainer.train_epoch(itertools.repeat(batch, steps), index)

    return prepare


def _eval(trainer: Trainer, data: DeviceData, batch_size: int) -> Callable[[int, int], Callable[[], None]]:
    def prepare(steps: int, index: int) -> Callable[[], None]:
        trainer.evaluate(itertools.islice(data.eval_batches("test", batch_size), 1))
        return lambda: trainer.evaluate(itertools.islice(data.eval_batches("test", batch_size), steps))

    return prepare


def run_bench(config: BenchConfig, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Measure; returns the JSON-ready result (see docs/BENCHMARKS.md for every key)."""
    device = resolve_device(config.device)
    variant = bench_variant(config)
    with variant_settings(variant, device):  # cuDNN autotuning as in training, restored afterwards
        return _measure(config, device, variant, log)


def _measure(
    config: BenchConfig, device: torch.device, variant: Variant, log: Callable[[str], None]
) -> dict[str, Any]:
    workers = default_workers() if config.workers is None else config.workers
    if workers < 0:
        raise InputError(f"bench: --workers {workers}: use 0 (load in the main process) or more")
    warmup = config.warmup if config.warmup is not None else (10 if device.type == "cuda" else 1)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nin-bench-data-") as tmp:
        data_dir = Path(config.data_dir) if config.data_dir else write_fashion_like(Path(tmp))
        log("measuring per-variant fixed costs")
        fixed, data = measure_fixed_costs(variant, device, data_dir, config.wandb)
    lead_in = max(1, workers)
    # Every window starts a fresh pass over the training images, with lead_in (reference) or 1 (harness) untimed steps.
    needed = lead_in + max(warmup, config.steps)
    if needed * variant.batch_size > len(data.train_y):
        raise InputError(
            f"bench: {needed} batches of {variant.batch_size} exceed the {len(data.train_y)} training images: "
            f"lower --steps, --warmup or --batch-size"
        )

    trainer = Trainer(variant, device)
    device_data = DeviceData.from_variant(data, device, variant)
    premade = tuple(t.clone() for t in next(device_data.train_batches(variant.batch_size, 0, 0)))
    eval_bs = eval_batch_size(variant.batch_size)
    eval_steps = min(config.steps, math.ceil(device_data.n_test / eval_bs))
    reference = ReferenceLoop(variant, device, d2l_loader(data.train_x, data.train_y, variant.batch_size,
                                                          variant.image_size, workers))  # fmt: skip
    windows = {
        "reference": _Window(device, _reference(reference, lead_in), host_memory.released),
        "harness": _Window(device, _harness(trainer, device_data, variant.batch_size)),
        "ceiling": _Window(device, _ceiling(trainer, premade)),
        "eval": _Window(device, _eval(trainer, device_data, eval_bs)),
    }
    images = {"reference": variant.batch_size, "harness": variant.batch_size, "ceiling": variant.batch_size}
    images["eval"] = eval_bs
    steps = {name: eval_steps if name == "eval" else config.steps for name in PATHS}

    log(f"warm-up: {warmup} step(s) per path")
    for name in PATHS:  # window indices from `windows` on are the warm-up's: other batches, same kind
        windows[name](min(warmup, steps[name]) if name == "eval" else warmup, config.windows)
    rates: dict[str, list[float]] = {name: [] for name in PATHS}
    for w in range(config.windows):
        order = PATHS[w % len(PATHS) :] + PATHS[: w % len(PATHS)]  # rotate: no path always runs first
        for name in order:
            seconds = windows[name](steps[name], w)
            rates[name].append(steps[name] * images[name] / seconds)
        log(f"window {w + 1}/{config.windows}: " + ", ".join(f"{n} {rates[n][-1]:.1f} img/s" for n in PATHS))

    median = {name: statistics.median(values) for name, values in rates.items()}
    profile = profile_variant(variant)
    peak = peak_flops(device, trainer.precision)  # on a CPU: the GEMM probe, cached per machine
    return {
        "reference_images_per_s": median["reference"],
        "harness_images_per_s": median["harness"],
        "ceiling_images_per_s": median["ceiling"],
        "eval_images_per_s": median["eval"],
        "speedup": median["harness"] / median["reference"],
        "overhead": 1 - median["harness"] / median["ceiling"],
        "mfu": model_flops_utilization(profile.flops, median["harness"], peak.flops if peak else None),
        "ceiling_mfu": model_flops_utilization(profile.flops, median["ceiling"], peak.flops if peak else None),
        "peak_flops": peak.flops if peak else None,
        "peak_source": peak.source if peak else None,
        "flops_per_image": profile.flops,
        "device": str(device),
        "device_name": device_name(device) if device.type == "cuda" else cpu_model(),
        "threads": torch.get_num_threads(),
        "precision": trainer.precision,
        "channels_last": variant.channels_last,
        "compile": variant.compile,
        "variant": variant.slug,
        "image_size": variant.image_size,
        "batch_size": variant.batch_size,
        "eval_batch_size": eval_bs,
        "steps": config.steps,
        "windows": config.windows,
        "warmup": warmup,
        "reference_workers": workers,
        "per_window_images_per_s": rates,
        "fixed_cost_s": fixed,
        "fixed_cost_target_s": PER_VARIANT_TARGET_S,
        "data": f"FashionMNIST from {config.data_dir}" if config.data_dir else SYNTHETIC_NOTE,
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "config": asdict(config),
    }


def is_seed_setting(result: dict[str, Any]) -> bool:
    """The issue's targets are stated for the seed NiN at 224 px, batch 128."""
    return result["variant"] == "d2l-gap-cccp2-do1" and result["image_size"] == 224 and result["batch_size"] == 128


def format_text(result: dict[str, Any]) -> str:
    r = result
    ms = {name: r[f"{name}_images_per_s"] for name in PATHS}
    per_window = r["per_window_images_per_s"]
    lines = [
        f"nin-ablate bench: {r['variant']} at {r['image_size']} px, batch {r['batch_size']}, on {r['device']} "
        f"({r['device_name']}, {r['threads']} threads), harness precision {r['precision']}"
        f"{', channels_last' if r['channels_last'] else ''}{', torch.compile' if r['compile'] else ''}",
        f"data: {r['data']}",
        f"method: one process; {r['windows']} windows x {r['steps']} steps per path in rotating order, "
        f"{r['warmup']} warm-up step(s) per path excluded; median window; reference with {r['reference_workers']} "
        f"DataLoader workers",
    ]
    labels = {
        "reference": "(a) d2l-style reference",
        "harness": "(b) harness train step",
        "ceiling": "(c) compute ceiling",
        "eval": "    harness eval (forward)",
    }
    for name in PATHS:
        windows = " ".join(f"{v:.1f}" for v in per_window[name])
        lines.append(f"  {labels[name]:<27} {ms[name]:10.1f} img/s   windows: {windows}")
    kind = r["device"].split(":")[0]
    targets = dict(TARGETS.get(kind, {})) if is_seed_setting(r) else {}
    if targets and kind == "cpu" and r["precision"] in CPU_MFU_TARGETS:
        targets["mfu"] = CPU_MFU_TARGETS[r["precision"]]
    lines.append(f"speedup b/a = {r['speedup']:.2f}{_versus(r['speedup'], targets.get('speedup'), '>=')}")
    lines.append(f"overhead 1 - b/c = {r['overhead']:.3f}{_versus(r['overhead'], targets.get('overhead'), '<=')}")
    if r["mfu"] is None:
        lines.append("MFU: n/a (no known dense peak for this device)")
    else:
        lines.append(
            f"MFU of (b) = {r['mfu']:.1%}, of (c) = {r['ceiling_mfu']:.1%} (3 x {r['flops_per_image'] / 1e9:.2f} "
            f"GFLOP per image over the {_flops(r['peak_flops'])} {r['precision']} peak, {r['peak_source']})"
            f"{_versus(r['mfu'], targets.get('mfu'), '>=')}"
        )
    f = r["fixed_cost_s"]
    once = ("dataset_first_load", "tracker_first_start")
    pieces = ", ".join(f"{k} {v:.2f}" for k, v in f.items() if k not in (*once, "per_variant"))
    lines.append(
        f"fixed cost once per worker: dataset first load {f['dataset_first_load']:.2f} s, "
        f"first W&B run (starts wandb's service) {f['tracker_first_start']:.2f} s"
    )
    lines.append(
        f"fixed cost per variant: {f['per_variant']:.2f} s{_versus(f['per_variant'], r['fixed_cost_target_s'], '<=')}"
        f" ({pieces} s)"
    )
    load = r["load_average"]
    lines.append(f"load average (1 min) before/after: {load['before'][0]:.2f} / {load['after'][0]:.2f}")
    return "\n".join(lines)


def _flops(value: float) -> str:
    return f"{value / 1e12:.1f} TFLOP/s" if value >= 1e12 else f"{value / 1e9:.1f} GFLOP/s"


def _versus(value: float, target: float | None, sense: str) -> str:
    if target is None:
        return ""
    met = value >= target if sense == ">=" else value <= target
    return f"  (target {sense} {target:g}: {'met' if met else 'NOT met'})"
