"""Which device, which precision, and how fast the chip could go (for MFU)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from nin.errors import InputError

# Dense (no sparsity) peak FLOP/s by device-name fragment, most specific first. Sources: vendor datasheets.
PEAK_FLOPS: list[tuple[tuple[str, ...], dict[str, float]]] = [
    (("H100", "PCIE"), {"bf16": 756e12, "fp32": 51e12}),
    (("H100",), {"bf16": 989e12, "fp32": 67e12}),
    (("H200",), {"bf16": 989e12, "fp32": 67e12}),
    (("GH200",), {"bf16": 989e12, "fp32": 67e12}),
    (("B200",), {"bf16": 2250e12, "fp32": 80e12}),
    (("A100",), {"bf16": 312e12, "fp32": 19.5e12}),
    (("L40S",), {"bf16": 362e12, "fp32": 91.6e12}),
    (("L4",), {"bf16": 121e12, "fp32": 30.3e12}),
    (("A10",), {"bf16": 125e12, "fp32": 31.2e12}),
    (("4090",), {"bf16": 165e12, "fp32": 82.6e12}),
    (("3090",), {"bf16": 71e12, "fp32": 35.6e12}),
]


def resolve_device(requested: str = "auto") -> torch.device:
    """'auto' → the first GPU if there is one, else the CPU; a GPU that is not there is a clear error."""
    if requested == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise InputError(f"unknown device {requested!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"--device {requested} asked for a GPU but torch sees none here: use --device cpu "
                f"(or auto), or check the NVIDIA driver and that torch is a CUDA build"
            )
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise InputError(
                f"--device {requested}: only {torch.cuda.device_count()} GPU(s) visible "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )
        return torch.device("cuda", index)
    if device.type != "cpu":
        raise InputError(f"unsupported device {requested!r}: use auto, cpu, cuda or cuda:N")
    return device


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16: without them bf16 matmuls are emulated and far slower than fp32 (measured 12× here)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    capability = torch.backends.cpu.get_cpu_capability().upper()
    return "amx_bf16" in flags or "avx512_bf16" in flags or "AMX" in capability


def resolve_precision(device: torch.device, requested: str = "auto") -> str:
    """'auto' → bf16 where the hardware computes it natively (CUDA bf16, CPU with AMX/AVX512-BF16), else fp32."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU, whose ops run synchronously): timers end here."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The device's dense peak for this precision, or None where we do not know it (every CPU)."""
    if device.type != "cuda":
        return None
    name = device_name(device).upper()
    for fragments, peaks in PEAK_FLOPS:
        if all(fragment in name for fragment in fragments):
            return peaks.get(precision)
    return None


def model_flops_utilization(forward_flops_per_image: float, images_per_s: float, peak: float | None) -> float | None:
    """Training costs ≈ 3 forward passes (forward + backward for activations and weights)."""
    if not peak or images_per_s <= 0:
        return None
    return 3 * forward_flops_per_image * images_per_s / peak
