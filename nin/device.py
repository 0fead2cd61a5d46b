"""Which device, which precision, and how fast the chip could go (for MFU)."""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import torch

from nin.errors import InputError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # precision → autocast dtype (fp32: no autocast)
PROBE_DTYPES = {"fp32": torch.float32, **AUTOCAST_DTYPES}  # the dtype a precision's matmuls run in

# Dense (no sparsity) peak FLOP/s by device-name fragment, most specific first. Sources: vendor datasheets; fp16 and
# bf16 are tensor-core figures with fp32 accumulation (what autocast runs). A precision missing from an entry has no
# fast path on that GPU (bf16 before Ampere), so MFU there is left null rather than measured against a wrong peak.
PEAK_FLOPS: list[tuple[tuple[str, ...], dict[str, float]]] = [
    (("H100", "PCIE"), {"bf16": 756e12, "fp16": 756e12, "fp32": 51e12}),
    (("H100",), {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12}),
    (("GH200",), {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12}),
    (("H200",), {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12}),
    (("B200",), {"bf16": 2250e12, "fp16": 2250e12, "fp32": 80e12}),
    (("A100",), {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12}),
    (("L40S",), {"bf16": 362e12, "fp16": 362e12, "fp32": 91.6e12}),
    (("L4",), {"bf16": 121e12, "fp16": 121e12, "fp32": 30.3e12}),
    (("A10",), {"bf16": 125e12, "fp16": 125e12, "fp32": 31.2e12}),
    (("4090",), {"bf16": 165e12, "fp16": 165e12, "fp32": 82.6e12}),
    (("3090",), {"bf16": 71e12, "fp16": 71e12, "fp32": 35.6e12}),
    # No bf16 (compute capability 7.x): what free notebook services hand out. fp16 on the tensor cores.
    (("T4",), {"fp16": 65e12, "fp32": 8.1e12}),
    (("V100S",), {"fp16": 130e12, "fp32": 16.4e12}),
    (("V100", "PCIE"), {"fp16": 112e12, "fp32": 14e12}),
    (("V100",), {"fp16": 125e12, "fp32": 15.7e12}),
    (("TITAN RTX",), {"fp16": 130e12, "fp32": 16.3e12}),
    (("2080 TI",), {"fp16": 53.8e12, "fp32": 13.4e12}),  # GeForce: fp16 with fp32 accumulation at half rate
    (("P100", "PCIE"), {"fp16": 18.7e12, "fp32": 9.3e12}),  # no tensor cores; auto stays fp32 there
    (("P100",), {"fp16": 21.2e12, "fp32": 10.6e12}),
]
BF16_CAPABILITY = (8, 0)  # Ampere and later compute bf16 natively; earlier GPUs emulate it
FP16_CAPABILITY = (7, 0)  # Volta and later have fp16 tensor cores

# The CPU peak is measured, not looked up: a short GEMM probe in the precision used, cached per machine.
CACHE_DIR_ENV = "NIN_ABLATE_CACHE_DIR"  # overrides $XDG_CACHE_HOME/nin-ablate (tests point it at a temp dir)
PEAK_FILE = "peak.json"
PROBE_SIZES = (256, 512, 1024)  # square matmuls: 0.75–12 MiB in fp32, cache-resident to L3-sized
PROBE_SECONDS = 2.0  # per precision: half on one core, half on all threads, each split over the sizes
CPU = torch.device("cpu")
GPU_PROBE_SIZES = (4096, 8192)  # 0.14-1.1 TFLOP per product: milliseconds on a datacenter GPU
CPUINFO = Path("/proc/cpuinfo")  # where the flags and model name are read (tests point it at a faked CPU's)
MATMUL_FLAGS = (  # /proc/cpuinfo flags that decide how fast a matmul can go
    "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile",
    "amx_bf16", "amx_fp16", "amx_int8", "asimd", "sve", "sve2", "bf16", "i8mm",
)  # fmt: skip


class Peak(NamedTuple):
    flops: float  # dense FLOP/s
    source: str  # "datasheet" (GPUs) or "measured" (CPUs: the GEMM probe)


# cuBLAS reads its workspace setting when a process first creates a cuBLAS handle, and with deterministic algorithms
# torch refuses cuBLAS calls unless it is one of the fixed sizes. A process that trains on a GPU therefore sets it
# before its first CUDA work, for every variant alike (a few MiB of workspace); a value the user set wins.
CUBLAS_WORKSPACE = ":4096:8"


def prepare_cuda_process(device: torch.device) -> None:
    """Before a process's first CUDA work: the fixed cuBLAS workspace deterministic variants need."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


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


def load_average() -> float | None:
    """The machine's 1-minute load average (runnable processes, this run's own included), or None where the OS has
    none: wall seconds measure whatever else ran beside a run, and this says how much did."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


@functools.lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """The matmul-relevant flags of this CPU (MATMUL_FLAGS present in /proc/cpuinfo), plus torch's ISA level."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        text = ""
    present: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):  # x86 and ARM spell it differently
            present.update(line.split(":", 1)[1].split())
    isa = f"torch:{torch.backends.cpu.get_cpu_capability()}"
    return (*(flag for flag in MATMUL_FLAGS if flag in present), isa)


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16: without them bf16 matmuls are emulated and far slower than fp32 (measured 12× here)."""
    flags = cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags or "AMX" in torch.backends.cpu.get_cpu_capability().upper()


def cuda_precision(device: torch.device) -> str:
    """The fastest safe precision of a GPU: bf16 where native, else fp16 on tensor cores (T4, V100), else fp32.
    (torch.cuda.is_bf16_supported() also says yes for emulated bf16, hence the capability check.)"""
    capability = torch.cuda.get_device_capability(device)
    if capability >= BF16_CAPABILITY:
        return "bf16"
    return "fp16" if capability >= FP16_CAPABILITY else "fp32"


def resolve_precision(device: torch.device, requested: str = "auto") -> str:
    """'auto' → bf16 where the hardware computes it natively (CUDA bf16, CPU with AMX/AVX512-BF16), fp16 on a GPU
    with tensor cores but no bf16, else fp32."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return cuda_precision(device)
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU, whose ops run synchronously): timers end here."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def peak_flops(device: torch.device, precision: str) -> Peak | None:
    """The device's dense peak for this precision: a GPU's datasheet figure (None for a GPU not listed), a CPU's
    measured by the GEMM probe (cached per machine, thread count and torch version)."""
    if device.type == "cuda":
        name = device_name(device).upper()
        for fragments, peaks in PEAK_FLOPS:
            if all(fragment in name for fragment in fragments):
                flops = peaks.get(precision)
                return Peak(flops, "datasheet") if flops else None
        return None
    if device.type == "cpu" and precision in PROBE_DTYPES:
        return Peak(measured_cpu_peak(precision, torch.get_num_threads()), "measured")
    return None


def model_flops_utilization(forward_flops_per_image: float, images_per_s: float, peak: float | None) -> float | None:
    """Training costs ≈ 3 forward passes (forward + backward for activations and weights)."""
    if not peak or images_per_s <= 0:
        return None
    return 3 * forward_flops_per_image * images_per_s / peak


# ---- the CPU GEMM probe -----------------------------------------------------------------------------------------


def cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nin-ablate"


def machine_key(threads: int) -> dict[str, Any]:
    """What a measured peak depends on: a change in any of these measures it again."""
    return {"cpu": cpu_model(), "flags": list(cpu_flags()), "threads": threads, "torch": torch.__version__}


def gemm_rate(
    precision: str,
    seconds: float = PROBE_SECONDS,
    sizes: tuple[int, ...] = PROBE_SIZES,
    device: torch.device = CPU,
) -> float:
    """The best FLOP/s of single square matmuls in this precision's dtype, over `seconds` split across `sizes`.
    The best repetition, not the mean: a peak is what the chip does when nothing else takes it. A size whose one
    matmul would not fit its share of the time (emulated bf16 is ~300x slower than fp32) is not tried. On a GPU each
    matmul is timed between two syncs (GPU_PROBE_SIZES keep the sync's cost to about 1% of the product)."""
    dtype = PROBE_DTYPES[precision]
    share = seconds / len(sizes)
    best = 0.0
    generator = torch.Generator(device).manual_seed(0)  # the global RNG of a running variant stays untouched
    for n in sizes:
        if best and 2 * n**3 / best > share / 4:  # too slow to repeat at this size within its share
            break
        a, b = (torch.randn(n, n, generator=generator, device=device).to(dtype) for _ in range(2))
        out = torch.empty(n, n, dtype=dtype, device=device)
        torch.mm(a, b, out=out)  # warm-up: oneDNN/BLAS (cuBLAS) picks and packs its kernel
        synchronize(device)
        end = time.perf_counter() + share
        while True:
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            synchronize(device)
            elapsed = time.perf_counter() - start
            best = max(best, 2 * n**3 / elapsed)
            if time.perf_counter() + elapsed > end:
                break
    return best


def probe_peak(
    precision: str, threads: int, seconds: float = PROBE_SECONDS, sizes: tuple[int, ...] = PROBE_SIZES
) -> float:
    """The peak of `threads` cores: the better of one core's GEMM rate times `threads` and the rate of all threads
    together. On a shared machine a multi-threaded probe mostly measures the scheduler (one descheduled thread
    stalls every matmul: 1-2 GFLOP/s instead of ~170 measured here), while one core's best rate is steady; per-core
    rate × cores is also how datasheets state a peak."""
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        flops = threads * gemm_rate(precision, seconds / 2, sizes)
        if threads > 1:
            torch.set_num_threads(threads)
            flops = max(flops, gemm_rate(precision, seconds / 2, sizes))
    finally:
        torch.set_num_threads(saved)
    return flops


@functools.cache
def measured_cpu_peak(precision: str, threads: int) -> float:
    """This machine's measured peak for `precision` at `threads` intra-op threads: read from the cache file, else
    probed (about PROBE_SECONDS) and written there. Cached per process too: a worker probes or reads once."""
    path = cache_dir() / PEAK_FILE
    key = machine_key(threads)
    entries = _read_peaks(path)
    for entry in entries:
        if entry.get("machine") == key and isinstance(entry.get("peaks", {}).get(precision), (int, float)):
            return float(entry["peaks"][precision])
    flops = probe_peak(precision, threads)
    entries = _read_peaks(path)  # another process may have written meanwhile
    entry = next((e for e in entries if e.get("machine") == key), None)
    if entry is None:
        entry = {"machine": key, "peaks": {}}
        entries.append(entry)
    entry["peaks"][precision] = flops
    entry["measured"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _write_peaks(path, entries)
    return flops


def _read_peaks(path: Path) -> list[dict[str, Any]]:
    """The cache's entries; a missing or unreadable file is an empty cache (it is measured again)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    entries = data.get("entries") if isinstance(data, dict) else None
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("peaks"), dict)] if entries else []


def _write_peaks(path: Path, entries: list[dict[str, Any]]) -> None:
    """Atomically (workers may race); a cache that cannot be written only means probing again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"entries": entries}, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass
