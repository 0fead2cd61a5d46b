"""`nin-ablate gpu-check`: what works on a device and how fast, in one call, into one folder (docs/GPU.md).

Written for the day a GPU is lent: a cold machine, minutes of device time, nothing to download. Each step reuses the
code a user runs (the bench, the runner, nin.device's GEMM probe) and is timed; OUT/gpu-check.json is rewritten as
each step ends, so a call cut short keeps what it did, and a rerun skips every step that already passed on the same
device.

  environment  device, driver, torch/CUDA/cuDNN versions, and how long the install took (the install stamp)
  peak         a GEMM probe in each precision the device offers: its measured dense peak
  bench        `nin-ablate bench` on the seeds' NiN: harness vs the d2l loop, MFU against the measured peak
  grid         a small grid on the embedded digits: GAP, FC and AlexNet heads x 2 seeds, plus a row per precision
  determinism  FC and GAP rows trained twice each, with `deterministic: true` (the docs' claim) and without
  packing      small runs one at a time vs several workers on the same device (HFTA's question), in this process
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml

from nin import store
from nin.device import (
    BF16_CAPABILITY,
    FP16_CAPABILITY,
    GPU_PROBE_SIZES,
    PROBE_SIZES,
    cpu_has_fast_bf16,
    cpu_model,
    device_name,
    gemm_rate,
    model_flops_utilization,
    probe_peak,
    resolve_device,
    resolve_precision,
)
from nin.errors import InputError
from nin.layout import METRICS_FILE, METRICS_TIMING_KEYS, GridDir, read_result

JSON_FILE, TEXT_FILE = "gpu-check.json", "gpu-check.txt"
STEPS = ("environment", "peak", "bench", "grid", "determinism", "packing")
# The settings every trained row starts from: the quick grid's (embedded digits; every head trains with them).
QUICK_GRID = Path(__file__).resolve().parents[1] / "ablations" / "quick.yaml"


@dataclass(frozen=True)
class Sizes:
    """How big each step is. FULL fits one H100 call with time to spare; TINY is the CPU dry run of the suite."""

    bench: dict[str, Any]  # BenchConfig fields
    grid: dict[str, Any]  # the grid and determinism rows' settings over the quick grid's
    pack: dict[str, Any]  # the packing rows' settings over the quick grid's: its small nets, the HFTA question
    pack_runs: int
    pack_workers: int
    probe_seconds: float  # per precision
    probe_sizes: tuple[int, ...] | None  # None: the device's default (nin.device)


FULL = Sizes(
    bench=dict(steps=10, windows=3),  # the seeds' NiN at 224 px, batch 128, 10 warm-up steps on a GPU
    grid=dict(width=1.0, image_size=224, epochs=5),
    pack=dict(epochs=3),  # the quick grid's net: width 0.125, 99 px
    pack_runs=8,
    pack_workers=4,
    probe_seconds=2.0,
    probe_sizes=None,
)
TINY = Sizes(
    bench=dict(width=0.125, image_size=68, batch_size=8, steps=1, windows=1, warmup=1, workers=0),
    grid=dict(width=0.125, image_size=68, epochs=1, warmup_epochs=0, train_size=40, test_size=20),
    pack=dict(width=0.125, image_size=68, epochs=1, warmup_epochs=0, train_size=40, test_size=20),
    pack_runs=2,
    pack_workers=2,
    probe_seconds=0.2,
    probe_sizes=(64, 128),
)


@dataclass(frozen=True)
class CheckConfig:
    out: Path
    device: str = "cuda"
    tiny: bool = False
    redo: tuple[str, ...] = ()  # steps to run again even if they passed
    work: Path | None = None  # where the runs train (checkpoints: GBs at full size); None: a temp dir, removed
    install_stamp: Path | None = None  # None: the running venv's (sys.prefix)

    @property
    def sizes(self) -> Sizes:
        return TINY if self.tiny else FULL


@dataclass
class Check:
    """The state the steps share: the config, the device, the record so far, and the measured peaks."""

    config: CheckConfig
    device: torch.device
    work: Path
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def peaks(self) -> dict[str, float]:
        return self.record["steps"].get("peak", {}).get("result", {}).get("flops", {})


def offered_precisions(device: torch.device) -> list[str]:
    """The precisions this device computes natively, fp32 first: what the grid and the peak probe cover."""
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        fast = [p for p, least in (("bf16", BF16_CAPABILITY), ("fp16", FP16_CAPABILITY)) if capability >= least]
    else:  # CPUs: bf16 where AMX or AVX512-BF16 computes it; fp16 autocast is emulated on every CPU we met
        fast = ["bf16"] if cpu_has_fast_bf16() else []
    return ["fp32", *fast]


def driver_version() -> str | None:
    """The NVIDIA driver's version as nvidia-smi reports it; None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


def install_record(stamp: Path) -> dict[str, Any]:
    """What the install stamp says: the Makefile writes 'seconds=N finished=ISO' into it when it installs."""
    if not stamp.is_file():
        return {"stamp": str(stamp), "seconds": None, "note": "no install stamp: not installed by 'make install'"}
    fields = dict(part.split("=", 1) for part in stamp.read_text().split() if "=" in part)
    seconds = float(fields["seconds"]) if fields.get("seconds", "").isdigit() else None
    note = None if seconds is not None else "stamp written before the install was timed"
    return {"stamp": str(stamp), "seconds": seconds, "finished": fields.get("finished"), "note": note}


# ---- the steps -----------------------------------------------------------------------------------------------


def step_environment(check: Check) -> dict[str, Any]:
    device = check.device
    stamp = check.config.install_stamp or Path(sys.prefix) / ".installed-stamp"
    result: dict[str, Any] = {
        "device": str(device),
        "device_name": device_name(device) if device.type == "cuda" else cpu_model(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "driver": driver_version() if device.type == "cuda" else None,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "precisions": offered_precisions(device),
        "auto_precision": resolve_precision(device, "auto"),
        "install": install_record(stamp),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        result.update(capability=list(torch.cuda.get_device_capability(device)), memory_gib=props.total_memory / 2**30,
                      multiprocessors=props.multi_processor_count)  # fmt: skip
    return result


def step_peak(check: Check) -> dict[str, Any]:
    """The dense GEMM peak of each offered precision, measured here (not the datasheet): the MFU denominators. A GPU's
    by the GEMM probe on it; a CPU's as nin.device measures it (one core's rate x threads, which a shared machine's
    scheduler cannot spoil), here uncached."""
    device, seconds = check.device, check.config.sizes.probe_seconds
    sizes = check.config.sizes.probe_sizes or (GPU_PROBE_SIZES if device.type == "cuda" else PROBE_SIZES)
    flops = {}
    for precision in offered_precisions(device):
        if device.type == "cuda":
            flops[precision] = gemm_rate(precision, seconds, sizes, device)
        else:
            flops[precision] = probe_peak(precision, torch.get_num_threads(), seconds, sizes)
    return {"flops": flops, "sizes": list(sizes), "seconds_each": seconds}


def step_bench(check: Check) -> dict[str, Any]:
    from bench.throughput import BenchConfig, run_bench

    config = BenchConfig(device=str(check.device), wandb="disabled", **check.config.sizes.bench)
    result = run_bench(config, log=lambda line: _say(f"bench: {line}"))
    peaks = check.peaks
    per_image = result["flops_per_image"]
    # The measured peak in the precision each path ran: the harness's, and fp32 for the d2l loop (no autocast).
    result["measured_peak_flops"] = peaks.get(result["precision"])
    result["measured_mfu"] = model_flops_utilization(per_image, result["harness_images_per_s"],
                                                     peaks.get(result["precision"]))  # fmt: skip
    result["measured_ceiling_mfu"] = model_flops_utilization(per_image, result["ceiling_images_per_s"],
                                                             peaks.get(result["precision"]))  # fmt: skip
    result["reference_measured_mfu"] = model_flops_utilization(per_image, result["reference_images_per_s"],
                                                               peaks.get("fp32"))  # fmt: skip
    return result


def grid_file(name: str, settings: dict[str, Any], axes: dict[str, list], seeds: int,
              include: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    quick = yaml.safe_load(QUICK_GRID.read_text())["settings"]
    grid: dict[str, Any] = {"name": name, "description": f"nin-ablate gpu-check: {name}",
                            "settings": {**quick, **settings}, "axes": axes, "seeds": seeds}  # fmt: skip
    if include:
        grid["include"] = include
    return grid


def check_grid(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """Every head at the device's auto precision (what users get), two seeds; then a GAP row in each other precision
    the device offers (on an H100: auto is bf16, the rows fp32 and fp16)."""
    auto = resolve_precision(device, "auto")
    include = [{"head": "gap", "precision": p} for p in offered_precisions(device) if p != auto]
    return grid_file("gpu-check-grid", sizes.grid, {"head": ["gap", "fc", "alexnet"]}, 2, include)


def step_grid(check: Check) -> dict[str, Any]:
    from runners.spec import load_grid

    grid = check_grid(check.device, check.config.sizes)
    started = time.perf_counter()
    code, grid_dir = _run_grid(check, grid, check.work / "grid")
    spec = check.work / "grid" / f"{grid['name']}.yaml"  # as _run_grid wrote it
    requested = {v.id: v.precision for v in load_grid(spec, max_runs=None).variants}
    results = [{**_row(read_result(p)), "requested_precision": requested.get(p.parent.name)}
               for p in sorted(grid_dir.runs.glob("*/result.json"))]  # fmt: skip
    problems = [f"{r['variant_id']}: {r['status']}: {r['error']}" for r in results if r["status"] != "ok"]
    if code and not problems or len(results) != _run_count(grid):
        problems.append(f"the runner exited {code} with {len(results)} of {_run_count(grid)} results")
    return {"seconds": time.perf_counter() - started, "runs": results, "problems": problems}


def determinism_grid(sizes: Sizes) -> dict[str, Any]:
    """The FC head with and without deterministic algorithms (its Linear runs on cuBLAS, the convolutions on cuDNN:
    each library has its own deterministic mode), and the GAP head with them (its global average pooling has its own
    backward kernel on a GPU)."""
    include = [{"head": "gap", "deterministic": True}]
    return grid_file("gpu-check-determinism", sizes.grid, {"head": ["fc"], "deterministic": [True, False]}, 1, include)


def step_determinism(check: Check) -> dict[str, Any]:
    """The same rows trained twice into two folders: is every per-epoch metric (timings aside) the same?"""
    grid = determinism_grid(check.config.sizes)
    dirs = [_run_grid(check, grid, check.work / "determinism" / copy)[1] for copy in ("a", "b")]
    rows: dict[str, Any] = {}
    problems = []
    for path in sorted(dirs[0].runs.glob("*/result.json")):
        run = path.parent.name
        results = [read_result(d.result_path(run)) for d in dirs]
        setting = f"{results[0]['head']} {'deterministic' if results[0]['deterministic'] else 'default'}"
        errors = [r["error"] for r in results if r["status"] != "ok"]
        if errors:
            rows[setting] = {"variant_id": run, "identical": None, "max_abs_diff": None, "error": errors[0]}
            problems.append(f"{setting}: {errors[0]}")
            continue
        first, second = (_metrics(d.runs / run / METRICS_FILE) for d in dirs)
        rows[setting] = {"variant_id": run, "identical": first == second, "max_abs_diff": _max_diff(first, second),
                         "error": None}  # fmt: skip
    if len(rows) != _run_count(grid):
        problems.append(f"{len(rows)} of {_run_count(grid)} settings trained: {_errors(dirs[0])}")
    return {"settings": rows, "problems": problems}


def pack_grid(sizes: Sizes) -> dict[str, Any]:
    seeds = max(1, sizes.pack_runs // 2)
    return grid_file("gpu-check-packing", sizes.pack, {"head": ["gap", "fc"]}, seeds)


def step_packing(check: Check) -> dict[str, Any]:
    """The same small runs trained one at a time, then by several workers sharing the device: the runner as a user
    runs it, `--device D` against `--device D --workers-per-device K`."""
    sizes = check.config.sizes
    grid = pack_grid(sizes)
    result: dict[str, Any] = {"runs": _run_count(grid), "workers": sizes.pack_workers}
    problems = []
    for mode, workers in (("one_at_a_time", 1), ("packed", sizes.pack_workers)):
        start = time.perf_counter()
        code, grid_dir = _run_grid(check, grid, check.work / "packing" / mode, workers_per_device=workers)
        wall = time.perf_counter() - start
        done = [read_result(p) for p in grid_dir.runs.glob("*/result.json")]
        ok = [r for r in done if r["status"] == "ok"]
        if code or len(ok) != result["runs"]:
            problems.append(f"{mode}: exit {code}, {len(ok)} of {result['runs']} runs ok: {_errors(grid_dir)}")
        images = sum(r["n_train"] * r["epochs_done"] for r in ok)
        span = _span_seconds(ok)
        result[mode] = {"wall_seconds": wall, "images": images, "images_per_s": images / wall,
                        "span_seconds": span, "span_images_per_s": images / span if span else None}  # fmt: skip
    one, packed = result["one_at_a_time"], result["packed"]
    result["speedup"] = packed["images_per_s"] / one["images_per_s"] if one["images_per_s"] else None
    if packed["span_images_per_s"] and one["span_images_per_s"]:
        result["span_speedup"] = packed["span_images_per_s"] / one["span_images_per_s"]
    result["problems"] = problems
    return result


STEP_FUNCTIONS: dict[str, Callable[[Check], dict[str, Any]]] = {
    "environment": step_environment,
    "peak": step_peak,
    "bench": step_bench,
    "grid": step_grid,
    "determinism": step_determinism,
    "packing": step_packing,
}


# ---- helpers -------------------------------------------------------------------------------------------------


def _say(line: str) -> None:
    print(f"gpu-check: {line}", file=sys.stderr, flush=True)


def _run_count(grid: dict[str, Any]) -> int:
    rows = 1
    for values in grid["axes"].values():
        rows *= len(values)
    return (rows + len(grid.get("include", []))) * grid["seeds"]


def _run_grid(check: Check, grid: dict[str, Any], out: Path, workers_per_device: int = 1) -> tuple[int, GridDir]:
    """Train `grid` with the runner a user runs (runners.run.run_grid), W&B off and no report."""
    from runners.run import RunOptions, run_grid

    out.mkdir(parents=True, exist_ok=True)
    spec = out / f"{grid['name']}.yaml"
    spec.write_text(yaml.safe_dump(grid, sort_keys=False))
    options = RunOptions(spec=spec, out=out, device=str(check.device), wandb="disabled", progress=False, report=False,
                         workers_per_device=workers_per_device)  # fmt: skip
    return run_grid(options), GridDir(out / grid["name"])


def _row(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("variant_id", "status", "error", "head", "seed", "precision", "params", "epochs_done", "test_acc",
            "train_acc", "train_seconds", "images_per_s", "mfu", "device_name")  # fmt: skip
    return {key: result.get(key) for key in keys}


def _errors(grid_dir: GridDir) -> list[str]:
    return [f"{p.parent.name}: {read_result(p).get('error')}" for p in grid_dir.runs.glob("*/result.json")
            if read_result(p).get("status") != "ok"]  # fmt: skip


def _metrics(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in row.items() if k not in METRICS_TIMING_KEYS} for row in rows]


def _max_diff(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> float | None:
    """The largest absolute difference of a numeric metric between the two runs (None: different shapes)."""
    if len(first) != len(second) or any(a.keys() != b.keys() for a, b in zip(first, second)):
        return None
    diffs = [abs(a[k] - b[k]) for a, b in zip(first, second) for k in a
             if isinstance(a[k], (int, float)) and isinstance(b[k], (int, float))]  # fmt: skip
    return max(diffs, default=0.0)


def _span_seconds(results: list[dict[str, Any]]) -> float | None:
    """From the first run's start to the last run's end (result.json's timestamps): training, without the start-up
    of the worker processes."""
    try:
        starts = [datetime.fromisoformat(r["started"]) for r in results]
        ends = [datetime.fromisoformat(r["finished"]) for r in results]
    except (KeyError, TypeError, ValueError):
        return None
    span = (max(ends) - min(starts)).total_seconds()
    return span if span > 0 else None


# ---- the run -------------------------------------------------------------------------------------------------


def _identity(config: CheckConfig, device: torch.device) -> dict[str, Any]:
    """What a step's result depends on: a rerun reuses a passed step only where all of it is the same."""
    name = device_name(device) if device.type == "cuda" else cpu_model()
    return {"device": str(device), "device_name": name, "tiny": config.tiny, "torch": torch.__version__}


def _load_record(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"identity": identity, "steps": {}}
    if not isinstance(record, dict) or record.get("identity") != identity or not isinstance(record.get("steps"), dict):
        return {"identity": identity, "steps": {}}  # another device or size: nothing of it carries over
    return record


def run_check(config: CheckConfig) -> dict[str, Any]:
    """Run every step not already passed; returns the record written to OUT/gpu-check.json."""
    unknown = sorted(set(config.redo) - set(STEPS))
    if unknown:
        raise InputError(f"gpu-check: --redo {','.join(unknown)}: not a step (steps: {', '.join(STEPS)})")
    device = resolve_device(config.device)
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"gpu-check: OUT {out} is a file: name a folder")
    out.mkdir(parents=True, exist_ok=True)
    identity = _identity(config, device)
    record = _load_record(out / JSON_FILE, identity)
    with tempfile.TemporaryDirectory(prefix="nin-gpu-check-", ignore_cleanup_errors=True) as tmp:
        work = Path(config.work) if config.work else Path(tmp)
        check = Check(config, device, work, record)
        for name in STEPS:
            previous = record["steps"].get(name)
            if previous and previous.get("status") == "ok" and name not in config.redo:
                _say(f"{name}: passed in an earlier call ({previous['seconds']:.1f} s), skipped")
                previous["skipped"] = True
                continue
            _say(f"{name}: running")
            shutil.rmtree(work / name, ignore_errors=True)  # a kept --work folder: runs are trained anew, not resumed
            start = time.perf_counter()
            try:
                with contextlib.redirect_stdout(sys.stderr):  # the runner's lines are progress: stdout is the summary
                    result = STEP_FUNCTIONS[name](check)
                # A step that ran but found something wrong (a run failed) keeps what it measured.
                problems = result.get("problems") or []
                entry = {"status": "failed" if problems else "ok", "result": result}
                if problems:
                    entry["error"] = "; ".join(problems)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # a step that breaks is a finding: the next steps still run
                entry = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-4000:]}  # fmt: skip
                if device.type == "cuda":  # an out-of-memory step leaves the next ones its cached blocks otherwise
                    torch.cuda.empty_cache()
            entry["seconds"] = time.perf_counter() - start
            entry["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            record["steps"][name] = entry
            record["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
            _say(f"{name}: {entry['status']} in {entry['seconds']:.1f} s" +
                 (f": {entry['error']}" if entry["status"] != "ok" else ""))  # fmt: skip
            _write(out, record)
    _write(out, record)
    return record


def _write(out: Path, record: dict[str, Any]) -> None:
    record["total_seconds"] = sum(s.get("seconds", 0.0) for s in record["steps"].values() if not s.get("skipped"))
    store.write_json(out / JSON_FILE, record)
    store.atomic_write_bytes(out / TEXT_FILE, (format_text(record) + "\n").encode())


def passed(record: dict[str, Any]) -> bool:
    return all(record["steps"].get(name, {}).get("status") == "ok" for name in STEPS)


# ---- the summary ---------------------------------------------------------------------------------------------


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _flops(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1e12:.1f} TFLOP/s" if value >= 1e12 else f"{value / 1e9:.1f} GFLOP/s"


def format_text(record: dict[str, Any]) -> str:
    steps = record["steps"]
    lines = [f"nin-ablate gpu-check on {record['identity']['device']} ({record['identity']['device_name']})"
             f"{', tiny sizes (dry run)' if record['identity']['tiny'] else ''}"]  # fmt: skip
    for name in STEPS:
        entry = steps.get(name)
        if entry is None:
            lines.append(f"[{name}] not run")
            continue
        when = " (passed earlier, skipped)" if entry.get("skipped") else ""
        lines.append(f"[{name}] {entry['status']} in {entry['seconds']:.1f} s{when}")
        if entry["status"] != "ok":
            lines.append(f"  {entry['error']}")
        if "result" in entry:
            lines.extend(f"  {line}" for line in SUMMARIES[name](entry["result"]))
    lines.append(f"total {record['total_seconds']:.1f} s of steps run in the last call; all passed: "
                 f"{'yes' if passed(record) else 'no'}")  # fmt: skip
    return "\n".join(lines)


def _summary_environment(r: dict[str, Any]) -> list[str]:
    install = r["install"]
    took = f"{install['seconds']:.0f} s" if install["seconds"] is not None else f"n/a ({install['note']})"
    return [
        f"{r['device_name']}; driver {r['driver'] or 'n/a'}; torch {r['torch']}, CUDA {r['cuda'] or 'n/a'}, "
        f"cuDNN {r['cudnn'] or 'n/a'}; Python {r['python']}",
        f"precisions offered: {', '.join(r['precisions'])} (auto = {r['auto_precision']}); install took {took}",
    ]


def _summary_peak(r: dict[str, Any]) -> list[str]:
    return ["measured GEMM peak: " + ", ".join(f"{p} {_flops(f)}" for p, f in r["flops"].items())]


def _summary_bench(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['variant']} at {r['image_size']} px, batch {r['batch_size']}, {r['precision']}: harness "
        f"{_rate(r['harness_images_per_s'])} img/s, d2l loop {_rate(r['reference_images_per_s'])} img/s "
        f"(speedup {r['speedup']:.2f}x), ceiling {_rate(r['ceiling_images_per_s'])} img/s",
        f"MFU {_share(r['measured_mfu'])} of the measured {_flops(r['measured_peak_flops'])} "
        f"(ceiling {_share(r['measured_ceiling_mfu'])}; against the bench's {r['peak_source'] or 'unknown'} peak "
        f"{_share(r['mfu'])}); "
        f"d2l loop MFU {_share(r['reference_measured_mfu'])} of the fp32 peak",
    ]


def _summary_grid(r: dict[str, Any]) -> list[str]:
    lines = [f"{len(r['runs'])} runs in {r['seconds']:.1f} s"]
    for run in r["runs"]:
        precision = f"{run['precision']}{' (auto)' if run['requested_precision'] == 'auto' else ''}"
        if run["status"] != "ok":
            lines.append(f"{run['variant_id']}: {run['status']}, {precision}: {run['error']}")
            continue
        lines.append(f"{run['variant_id']}: ok, {precision}, test_acc {run['test_acc']:.3f}, "
                     f"{_rate(run['images_per_s'])} img/s, MFU {_share(run['mfu'])}")  # fmt: skip
    return lines


def _summary_determinism(r: dict[str, Any]) -> list[str]:
    lines = []
    for setting, row in r["settings"].items():
        if row["error"]:
            lines.append(f"{setting}: FAILED: {row['error']}")
        else:
            verdict = "identical" if row["identical"] else "DIFFER"
            lines.append(f"{setting}: two runs {verdict} (largest metric difference {row['max_abs_diff']})")
    return lines


def _summary_packing(r: dict[str, Any]) -> list[str]:
    one, packed = r["one_at_a_time"], r["packed"]
    span = f"; training span {r['span_speedup']:.2f}x" if r.get("span_speedup") else ""
    speedup = "n/a" if r["speedup"] is None else f"{r['speedup']:.2f}x"
    return [f"{r['runs']} small runs: one at a time {_rate(one['images_per_s'])} img/s, {r['workers']} workers on "
            f"one device {_rate(packed['images_per_s'])} img/s: {speedup} wall{span}"]  # fmt: skip


SUMMARIES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "environment": _summary_environment,
    "peak": _summary_peak,
    "bench": _summary_bench,
    "grid": _summary_grid,
    "determinism": _summary_determinism,
    "packing": _summary_packing,
}


def with_redo(config: CheckConfig, steps: str | None) -> CheckConfig:
    return replace(config, redo=tuple(s.strip() for s in steps.split(",") if s.strip())) if steps else config
