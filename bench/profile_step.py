"""Where one training step's time goes: torch.profiler's per-op table of `Trainer.train_step`, with MFU.

    python -m bench.profile_step [--device cpu] [--batch-size 128] [--steps 1] [--no-channels-last] [--threads N]
                                 [--release-freed-memory] [--no-profiler]

Builds the bench's variant (the seeds' NiN at 224 px unless told otherwise), runs one untimed warm-up step, then
profiles `--steps` steps on one pre-made batch (no input pipeline). Prints the ops by self time, the step's MFU
against the device's peak (measured on a CPU), how much of the step the convolutions take, and the kernel time and
page faults the steps took. `--release-freed-memory` trains under glibc's default allocator settings instead of the
harness's (nin.host_memory); `--no-profiler` times the steps alone.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from contextlib import nullcontext

import torch
from torch.profiler import ProfilerActivity, profile

from nin import host_memory
from nin.device import model_flops_utilization, peak_flops, resolve_device, synchronize
from nin.profile import profile_variant
from nin.train import Trainer, variant_settings
from nin.variant import Variant


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_step", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default="d2l")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--threads", type=int, help="intra-op threads (default: torch's, all cores)")
    parser.add_argument("--release-freed-memory", action="store_true", help="glibc's defaults, not the harness's")
    parser.add_argument("--no-profiler", action="store_true", help="time the steps without torch.profiler")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    fields = dict(arch=args.arch, width=args.width, batch_size=args.batch_size, precision=args.precision,
                  channels_last=not args.no_channels_last)  # fmt: skip
    if args.image_size:
        fields["image_size"] = args.image_size
    variant = Variant(**fields)
    with variant_settings(variant, device, args.threads):
        trainer = Trainer(variant, device)
        x = torch.randn(args.batch_size, variant.in_channels, variant.image_size, variant.image_size, device=device)
        if variant.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, variant.num_classes, (args.batch_size,), device=device)
        trainer.model.train()
        trainer.train_step(x, y)  # warm-up: kernel choice, weight packing
        synchronize(device)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        memory = host_memory.released() if args.release_freed_memory else nullcontext()
        profiler = nullcontext() if args.no_profiler else profile(activities=activities)
        with memory:
            if args.release_freed_memory:
                trainer.train_step(x, y)  # a step under glibc's defaults before the timed ones, as for the harness
            with profiler as prof:  # the timed steps only, as their table and MFU describe
                usage = resource.getrusage(resource.RUSAGE_SELF)
                start = time.perf_counter()
                for _ in range(args.steps):
                    trainer.train_step(x, y)
                synchronize(device)
                seconds = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_SELF)
        peak = peak_flops(device, trainer.precision)
        flops = profile_variant(variant).flops
        rate = args.steps * args.batch_size / seconds
        conv_share = None
        if prof is not None:
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows,
                                            max_name_column_width=40))  # fmt: skip
            totals = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
            conv_us = sum(us for key, us in totals.items() if "conv" in key or "convolution" in key)
            conv_share = conv_us / sum(totals.values())
        layout = "channels_last" if variant.channels_last else "contiguous"
        allocator = "glibc defaults" if args.release_freed_memory else "freed memory kept (harness)"
        print(f"{variant.slug} at {variant.image_size} px, batch {args.batch_size}, {trainer.precision}, {layout}, "
              f"{torch.get_num_threads()} threads, {allocator}")  # fmt: skip
        print(f"step: {seconds / args.steps:.2f} s, {rate:.1f} img/s (profiler {'off' if prof is None else 'on'}); "
              f"per step {(after.ru_stime - usage.ru_stime) / args.steps:.2f} s in the kernel, "
              f"{(after.ru_minflt - usage.ru_minflt) // args.steps} page faults")  # fmt: skip
        if peak:
            mfu = model_flops_utilization(flops, rate, peak.flops)
            conv = "" if conv_share is None else f"; convolution ops: {conv_share:.1%} of self CPU time"
            print(f"MFU {mfu:.1%} of {peak.flops / 1e9:.1f} GFLOP/s ({peak.source}){conv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
