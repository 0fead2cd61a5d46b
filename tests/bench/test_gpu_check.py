"""`nin-ablate gpu-check`: the CPU dry run end to end (so the GPU check cannot rot between loans), and its GPU-only
branches with the GPU faked where the code reads it (capability, name, properties, nvidia-smi), as
test_cpu_capability.py fakes CPUs."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench import gpu_check as gc
from nin import device as dev
from runners.cli import main
from runners.spec import load_grid

# (compute capability, precisions offered, what auto resolves to): H100, T4, P100.
GPUS = [((9, 0), ["fp32", "bf16", "fp16"], "bf16"), ((7, 5), ["fp32", "fp16"], "fp16"), ((6, 0), ["fp32"], "fp32")]
CUDA = torch.device("cuda", 0)


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_cpu_dry_run_passes_every_step_and_a_rerun_skips_what_passed(tmp_path, capsys):
    out, work = tmp_path / "out", tmp_path / "work"
    assert main(["gpu-check", "--out", str(out), "--device", "cpu", "--tiny", "--work", str(work)]) == 0
    record = json.loads((out / gc.JSON_FILE).read_text())
    steps = record["steps"]
    assert list(steps) == list(gc.STEPS) and all(s["status"] == "ok" for s in steps.values())
    assert all(s["seconds"] >= 0 for s in steps.values())

    env = steps["environment"]["result"]
    assert env["device"] == "cpu" and env["torch"] == torch.__version__ and env["precisions"][0] == "fp32"
    assert set(env["install"]) >= {"stamp", "seconds"}
    peaks = steps["peak"]["result"]["flops"]
    assert list(peaks) == env["precisions"] and all(_positive(f) for f in peaks.values())

    bench = steps["bench"]["result"]
    assert _positive(bench["harness_images_per_s"]) and _positive(bench["reference_images_per_s"])
    # MFU against the peak measured by the check, in the precision the harness ran (fp32 for the d2l loop).
    per_image = 3 * bench["flops_per_image"]
    assert math.isclose(bench["measured_mfu"], per_image * bench["harness_images_per_s"] / peaks[bench["precision"]])
    assert math.isclose(bench["reference_measured_mfu"], per_image * bench["reference_images_per_s"] / peaks["fp32"])

    runs = steps["grid"]["result"]["runs"]
    others = [p for p in env["precisions"] if p != env["auto_precision"]]
    assert len(runs) == 2 * (3 + len(others)) and all(r["status"] == "ok" for r in runs)
    auto = [r for r in runs if r["requested_precision"] == "auto"]
    assert {(r["head"], r["seed"]) for r in auto} == {(h, s) for h in ("gap", "fc", "alexnet") for s in (0, 1)}
    assert all(r["precision"] == env["auto_precision"] for r in auto)
    assert sorted(r["precision"] for r in runs if r["requested_precision"] != "auto") == sorted(others * 2)

    # On a CPU, the same variant at the same thread count is bit-identical (docs/CLI.md), with or without
    # deterministic algorithms.
    determinism = steps["determinism"]["result"]["settings"]
    assert set(determinism) == {"fc deterministic", "fc default", "gap deterministic"}
    assert all(row["identical"] and row["max_abs_diff"] == 0 for row in determinism.values())

    packing = steps["packing"]["result"]
    assert (packing["runs"], packing["workers"]) == (2, 2)
    assert packing["one_at_a_time"]["images"] == packing["packed"]["images"] > 0
    rates = (packing["packed"]["images_per_s"], packing["one_at_a_time"]["images_per_s"])
    assert math.isclose(packing["speedup"], rates[0] / rates[1])

    text = (out / gc.TEXT_FILE).read_text()
    assert all(f"[{name}] ok" in text for name in gc.STEPS) and "all passed: yes" in text
    assert capsys.readouterr().out.strip() == text.strip()

    # A rerun reuses every passed step but the one asked for again.
    first = {name: entry["finished"] for name, entry in steps.items()}
    assert main(["gpu-check", "--out", str(out), "--device", "cpu", "--tiny", "--redo", "environment"]) == 0
    again = json.loads((out / gc.JSON_FILE).read_text())["steps"]
    assert [n for n, e in again.items() if not e.get("skipped")] == ["environment"]
    assert all(again[n]["finished"] == first[n] for n in gc.STEPS if n != "environment")
    assert "(passed earlier, skipped)" in (out / gc.TEXT_FILE).read_text()


@pytest.mark.parametrize(("capability", "offered", "auto"), GPUS)
def test_the_grid_covers_every_head_twice_and_each_other_precision_the_gpu_offers(
    monkeypatch, tmp_path, capability, offered, auto
):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert gc.offered_precisions(CUDA) == offered
    grid = gc.check_grid(CUDA, gc.FULL)
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps(grid))  # JSON is YAML: validated by the grid loader a user's file goes through
    variants = load_grid(path, max_runs=None).variants
    assert len(variants) == 2 * (3 + len(offered) - 1)
    assert {v.precision for v in variants} == {"auto", *(set(offered) - {auto})}
    assert {(v.head, v.seed) for v in variants if v.precision == "auto"} == {
        (h, s) for h in ("gap", "fc", "alexnet") for s in (0, 1)
    }
    assert all((v.image_size, v.width, v.dataset) == (224, 1.0, "digits") for v in variants)


def test_environment_on_a_faked_gpu_reports_device_driver_and_versions(monkeypatch, tmp_path):
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\necho '580.159.04'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}:/usr/bin:/bin")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    props = SimpleNamespace(total_memory=80 * 2**30, multi_processor_count=132)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
    stamp = tmp_path / "stamp"
    stamp.write_text("seconds=42 finished=2026-12-06T22:00:00Z\n")
    config = gc.CheckConfig(out=tmp_path / "out", install_stamp=stamp)
    env = gc.step_environment(gc.Check(config, CUDA, tmp_path, {"steps": {}}))
    assert env["device_name"] == "NVIDIA H100 80GB HBM3" and env["driver"] == "580.159.04"
    assert (env["capability"], env["memory_gib"], env["multiprocessors"]) == ([9, 0], 80.0, 132)
    assert env["precisions"] == ["fp32", "bf16", "fp16"] and env["auto_precision"] == "bf16"
    assert env["install"]["seconds"] == 42.0
    lines = gc._summary_environment(env)
    assert "driver 580.159.04" in lines[0] and "install took 42 s" in lines[1]


def test_install_record_reads_the_stamp_the_makefile_writes(tmp_path):
    stamp = tmp_path / "stamp"
    assert gc.install_record(stamp)["seconds"] is None
    stamp.write_text("")  # a stamp from before the install was timed (touch)
    assert gc.install_record(stamp)["seconds"] is None and gc.install_record(stamp)["note"]
    # The Makefile's own line, run by the shell as make runs it.
    makefile = Path(__file__).resolve().parents[2] / "Makefile"
    line = next(row for row in makefile.read_text().splitlines() if "> $(STAMP)" in row and "seconds=" in row)
    command = line.strip().lstrip("@").replace("$$", "$").replace("$(VENV)", str(tmp_path))
    command = command.replace("$(STAMP)", str(stamp))
    (tmp_path / ".install-started").write_text("1000\n")
    subprocess.run(["sh", "-c", command], check=True)
    record = gc.install_record(stamp)
    assert record["seconds"] > 1000 and record["finished"]


def test_gemm_probe_syncs_the_device_it_runs_on(monkeypatch):
    synced = []
    monkeypatch.setattr(dev, "synchronize", lambda device: synced.append(device))
    assert dev.gemm_rate("fp32", 0.05, sizes=(32,), device=torch.device("cpu")) > 0
    assert synced and all(d == torch.device("cpu") for d in synced)


def test_a_record_of_another_device_or_size_is_not_reused(tmp_path):
    path = tmp_path / gc.JSON_FILE
    identity = {"device": "cuda:0", "device_name": "NVIDIA H100", "tiny": False, "torch": "2.11.0"}
    path.write_text(json.dumps({"identity": {**identity, "tiny": True}, "steps": {"peak": {"status": "ok"}}}))
    assert gc._load_record(path, identity)["steps"] == {}
    path.write_text(json.dumps({"identity": identity, "steps": {"peak": {"status": "ok"}}}))
    assert gc._load_record(path, identity)["steps"] == {"peak": {"status": "ok"}}


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["gpu-check", "--out", str(out), "--device", "cpu", "--redo", "nonsense"]) == 2
    assert "--redo nonsense: not a step" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["gpu-check", "--out", str(out), "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "torch sees none here" in err
    assert not out.exists()
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}  # not the flags of a `make test` around us
    done = subprocess.run(["make", "-s", "gpu-check"], cwd=root, capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "OUT is required" in done.stderr


def test_a_run_that_fails_fails_its_step_which_keeps_what_it_measured(tmp_path, monkeypatch, capsys):
    """E.g. torch refusing cuBLAS under deterministic algorithms: the FC head's runs fail, the others still count."""
    from runners import worker

    real = worker.train

    def train(variant, *args, **kwargs):
        if variant.head == "fc" and variant.deterministic:
            raise RuntimeError("faked: Deterministic behavior was enabled ... CUBLAS_WORKSPACE_CONFIG")
        return real(variant, *args, **kwargs)

    monkeypatch.setattr(worker, "train", train)
    for name in ("environment", "peak", "bench", "grid", "packing"):  # only the determinism step runs for real
        monkeypatch.setitem(gc.STEP_FUNCTIONS, name, lambda check: {})
        monkeypatch.setitem(gc.SUMMARIES, name, lambda result: [])
    out = tmp_path / "out"
    assert main(["gpu-check", "--out", str(out), "--device", "cpu", "--tiny", "--work", str(tmp_path / "w")]) == 1
    entry = json.loads((out / gc.JSON_FILE).read_text())["steps"]["determinism"]
    assert entry["status"] == "failed" and "CUBLAS_WORKSPACE_CONFIG" in entry["error"]
    settings = entry["result"]["settings"]
    assert settings["fc deterministic"]["identical"] is None and "faked" in settings["fc deterministic"]["error"]
    assert settings["fc default"]["identical"] is True and settings["gap deterministic"]["identical"] is True
    text = capsys.readouterr().out
    assert "[determinism] failed" in text and "fc deterministic: FAILED: RuntimeError: faked" in text
    assert "all passed: no" in text


def test_workers_per_device_shares_each_listed_device(monkeypatch, tmp_path, capsys):
    from nin.errors import InputError
    from runners.run import parse_devices

    cpu = torch.device("cpu")
    assert parse_devices("cpu", 2) == [cpu, cpu] and parse_devices("cpu,cpu") == [cpu, cpu]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    gpu0, gpu1 = torch.device("cuda", 0), torch.device("cuda", 1)
    assert parse_devices("cuda:0", 3) == [gpu0] * 3
    assert parse_devices("cuda", 2) == [gpu0, gpu0, gpu1, gpu1]
    assert parse_devices("cuda:1,cpu", 2) == [gpu1, gpu1, cpu, cpu]
    with pytest.raises(InputError, match="list it once and add --workers-per-device N"):
        parse_devices("cuda:0,cuda:0")
    # Ray places one task per GPU it counts: packing is the local executor's.
    grid = Path(__file__).resolve().parents[2] / "ablations" / "quick.yaml"
    out = tmp_path / "out"
    args = ["run", str(grid), "--out", str(out), "--executor", "ray", "--workers-per-device", "2"]
    assert main(args) == 2
    assert "use it with --executor local" in capsys.readouterr().err and not out.exists()


def test_on_a_gpu_the_peak_is_probed_on_the_gpu_in_each_offered_precision(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(gc, "gemm_rate", lambda precision, seconds, sizes, device: calls.append(
        (precision, seconds, sizes, device)) or 1e12)  # fmt: skip
    result = gc.step_peak(gc.Check(gc.CheckConfig(out=tmp_path), CUDA, tmp_path, {"steps": {}}))
    assert result["flops"] == {"fp32": 1e12, "bf16": 1e12, "fp16": 1e12}
    assert calls == [(p, gc.FULL.probe_seconds, dev.GPU_PROBE_SIZES, CUDA) for p in ("fp32", "bf16", "fp16")]
