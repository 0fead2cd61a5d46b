"""Which precision and memory layout trains fastest on this machine: the compute ceiling of each, side by side.

    python -m bench.precision [--device cpu] [--batch-size 32] [--steps 2] [--windows 2] [--settings A,B] [--json]

Times `Trainer.train_epoch` on one pre-made batch (no input pipeline) for fp32 NCHW, fp32 channels_last and bf16
channels_last (or the --settings named), in rotating windows in one process; reports the median images/s of each and
its MFU against the device's peak for that precision (measured on a CPU). This is the measurement
behind `precision: auto` (nin/device.py): bf16 only where the hardware computes it natively.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from datetime import datetime, timezone

import torch

from nin.device import (
    cpu_has_fast_bf16,
    cpu_model,
    model_flops_utilization,
    peak_flops,
    resolve_device,
    resolve_precision,
    synchronize,
)
from nin.profile import profile_variant
from nin.train import Trainer, variant_settings
from nin.variant import Variant

SETTINGS = (("fp32", False), ("fp32", True), ("bf16", True))  # (precision, channels_last)


def _name(precision: str, channels_last: bool) -> str:
    return f"{precision}{'+channels_last' if channels_last else ''}"


def parse_setting(name: str) -> tuple[str, bool]:
    precision, _, layout = name.partition("+")
    if precision not in ("fp32", "bf16", "fp16") or layout not in ("", "channels_last"):
        raise SystemExit(f"bench.precision: unknown setting {name!r}: use e.g. fp32, fp32+channels_last, bf16")
    return precision, layout == "channels_last"


def compare(
    device: torch.device, batch_size: int, steps: int, windows: int, width: float = 1.0, settings=SETTINGS
) -> dict:
    trainers, batches = {}, {}
    for precision, channels_last in settings:
        variant = Variant(batch_size=batch_size, precision=precision, channels_last=channels_last, width=width)
        name = _name(precision, channels_last)
        trainers[name] = Trainer(variant, device)
        x = torch.randn(batch_size, variant.in_channels, variant.image_size, variant.image_size, device=device)
        y = torch.randint(0, variant.num_classes, (batch_size,), device=device)
        batches[name] = (x.contiguous(memory_format=torch.channels_last) if channels_last else x, y)
    names = list(trainers)

    def window(name: str, n: int, epoch: int) -> float:
        synchronize(device)
        start = time.perf_counter()
        trainers[name].train_epoch(itertools.repeat(batches[name], n), epoch)  # ends with a sync
        return time.perf_counter() - start

    for name in names:  # warm-up, excluded
        window(name, 1, windows)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for w in range(windows):
        for name in names[w % len(names) :] + names[: w % len(names)]:
            rates[name].append(steps * batch_size / window(name, steps, w))
    median = {name: statistics.median(values) for name, values in rates.items()}
    flops = profile_variant(next(iter(trainers.values())).variant).flops
    peaks = {name: peak_flops(device, trainers[name].precision) for name in names}
    return {
        "images_per_s": median,
        "mfu": {name: model_flops_utilization(flops, median[name], peaks[name].flops if peaks[name] else None)
                for name in names},  # fmt: skip
        "peak_flops": {name: peaks[name].flops if peaks[name] else None for name in names},
        "flops_per_image": flops,
        "per_window_images_per_s": rates,
        "auto_resolves_to": resolve_precision(device, "auto"),
        "cpu_has_fast_bf16": cpu_has_fast_bf16(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "threads": torch.get_num_threads(),
        "variant": f"d2l-gap-cccp2-do1 width {width:g} at 224 px",
        "batch_size": batch_size,
        "steps": steps,
        "windows": windows,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.precision", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--settings", help="comma-separated, e.g. fp32,fp32+channels_last (default: all three)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    with variant_settings(Variant(), device):  # cuDNN autotuning as in training, restored afterwards
        settings = tuple(map(parse_setting, args.settings.split(","))) if args.settings else SETTINGS
        result = compare(device, args.batch_size, args.steps, args.windows, args.width, settings)
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
        return 0
    print(f"{result['variant']}, batch {args.batch_size}, {result['device']} ({result['device_name']}, "
          f"{result['threads']} threads); precision auto -> {result['auto_resolves_to']}")  # fmt: skip
    for name, rate in result["images_per_s"].items():
        windows = " ".join(f"{v:.2f}" for v in result["per_window_images_per_s"][name])
        mfu = result["mfu"][name]
        share = f"MFU {mfu:6.1%}" if mfu is not None else "MFU n/a"
        print(f"  {name:<20} {rate:8.2f} img/s  {share}   windows: {windows}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
