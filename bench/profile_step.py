"""Where one training step's time goes: torch.profiler's per-op table of `Trainer.train_step`, with MFU.

    python -m bench.profile_step [--device cpu] [--batch-size 128] [--steps 1] [--no-channels-last] [--threads N]

Builds the bench's variant (the seeds' NiN at 224 px unless told otherwise), runs one untimed warm-up step, then
profiles `--steps` steps on one pre-made batch (no input pipeline). Prints the ops by self time, the step's MFU
against the device's peak (measured on a CPU), and how much of the step the convolutions take.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

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
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step(x, y)
            synchronize(device)
            seconds = time.perf_counter() - start
        peak = peak_flops(device, trainer.precision)
        flops = profile_variant(variant).flops
        rate = args.steps * args.batch_size / seconds
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40)
        print(table)
        totals = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
        all_us = sum(totals.values())
        conv_us = sum(us for key, us in totals.items() if "conv" in key or "convolution" in key)
        layout = "channels_last" if variant.channels_last else "contiguous"
        print(f"{variant.slug} at {variant.image_size} px, batch {args.batch_size}, {trainer.precision}, {layout}, "
              f"{torch.get_num_threads()} threads")  # fmt: skip
        print(f"step: {seconds / args.steps:.2f} s, {rate:.1f} img/s (profiler on)")
        if peak:
            mfu = model_flops_utilization(flops, rate, peak.flops)
            print(f"MFU {mfu:.1%} of {peak.flops / 1e9:.1f} GFLOP/s ({peak.source}); convolution ops: "
                  f"{conv_us / all_us:.1%} of self CPU time")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
