"""`nin-ablate bench` end to end at toy sizes: the numbers are machine-dependent, their presence and sanity are not."""

from __future__ import annotations

import json
import math
import re

from tests.conftest import run_cli

TINY = ("--device", "cpu", "--width", "0.125", "--batch-size", "8", "--image-size", "68", "--steps", "2")
RATES = ("reference_images_per_s", "harness_images_per_s", "ceiling_images_per_s", "eval_images_per_s")
FIXED = ("dataset_first_load", "dataset_cached_load", "device_data", "model_build", "profile", "tracker_first_start",
         "tracker_start", "tracker_finish", "result_write", "per_variant")  # fmt: skip
NOT_PIECES = ("dataset_first_load", "tracker_first_start", "per_variant")


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_bench_json_reports_every_path_ratio_and_fixed_cost():
    proc = run_cli("bench", *TINY, "--windows", "2", "--json", timeout=240)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in RATES:
        assert _positive(result[key]), (key, result[key])
        assert len(result["per_window_images_per_s"][key.removesuffix("_images_per_s")]) == 2
    # The ratios are the medians' ratios, as the docs define them.
    assert math.isclose(result["speedup"], result["harness_images_per_s"] / result["reference_images_per_s"])
    assert math.isclose(result["overhead"], 1 - result["harness_images_per_s"] / result["ceiling_images_per_s"])
    # The CPU's peak is measured by the GEMM probe; mfu is the documented formula over the harness's median.
    assert result["peak_source"] == "measured" and _positive(result["peak_flops"])
    per_image = 3 * result["flops_per_image"] / result["peak_flops"]
    assert math.isclose(result["mfu"], per_image * result["harness_images_per_s"])
    assert math.isclose(result["ceiling_mfu"], per_image * result["ceiling_images_per_s"])
    assert result["device"] == "cpu" and result["precision"] in ("fp32", "bf16")
    assert (result["batch_size"], result["steps"], result["windows"], result["image_size"]) == (8, 2, 2, 68)
    for key in FIXED:
        assert key in result["fixed_cost_s"] and math.isfinite(result["fixed_cost_s"][key]), key
        assert result["fixed_cost_s"][key] >= 0, key
    pieces = sum(v for k, v in result["fixed_cost_s"].items() if k not in NOT_PIECES)
    assert math.isclose(result["fixed_cost_s"]["per_variant"], pieces)
    assert result["date"] and result["torch"] and "synthetic" in result["data"]


def test_profile_step_reports_the_step_its_kernel_time_and_mfu(capsys):
    from bench.profile_step import main

    tiny = ["--width", "0.125", "--image-size", "68", "--batch-size", "8", "--threads", "1"]
    assert main(tiny) == 0
    out = capsys.readouterr().out
    assert "aten::" in out and "convolution ops:" in out and "freed memory kept (harness)" in out, out
    mfu = float(re.search(r"^MFU (\d+\.\d)% of .* \(measured\)", out, re.M).group(1))
    assert 0 < mfu < 100
    assert main([*tiny, "--release-freed-memory", "--no-profiler", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "aten::" not in out and "glibc defaults" in out and "profiler off" in out, out
    assert re.search(r"per step \d+\.\d\d s in the kernel, \d+ page faults", out), out


def test_bench_rejects_bad_settings_in_one_line():
    proc = run_cli("bench", *TINY[:6], "--image-size", "8")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "image_size 8 is too small" in lines[0], proc.stderr


def test_grid_estimate_follows_the_documented_formula(tmp_path):
    from bench.estimate import estimate_grid, train_set_evals
    from nin.profile import profile_variant
    from runners.spec import load_grid

    spec = tmp_path / "one.yaml"
    spec.write_text(
        "name: one\nsettings: {arch: cifar, width: 0.125, dataset: digits, epochs: 4, eval_train_every: 2}\n"
        "axes: {head: [gap, fc]}\nseeds: [0]\n"
    )
    first = load_grid(spec).variants[0]
    bench = {
        "flops_per_image": profile_variant(first).flops,  # the first variant trains at the measured rates
        "harness_images_per_s": 100.0,
        "eval_images_per_s": 400.0,
        "fixed_cost_s": {"dataset_first_load": 2.0, "tracker_first_start": 1.0, "per_variant": 1.5},
    }
    result = estimate_grid("one", load_grid(spec).variants, bench, devices=2)
    assert train_set_evals(4, 2) == 2 and train_set_evals(4, 0) == 1 and train_set_evals(3, 2) == 2
    seconds = [row["seconds"] for row in result["runs_detail"]]
    assert math.isclose(seconds[0], 1.5 + 4 * (1437 / 100 + 360 / 400) + 2 * 1437 / 400)  # digits: 1437/360
    # The second variant (fc head) is scaled by its own FLOPs.
    second = load_grid(spec).variants[1]
    scale = profile_variant(second).flops / bench["flops_per_image"]
    assert math.isclose(seconds[1], 1.5 + scale * (seconds[0] - 1.5))
    assert math.isclose(result["wall_seconds"], 3.0 + sum(seconds) / 2)


def test_walltime_splits_a_real_grid_run_into_parts_that_add_up(tmp_path):
    import nin.store
    import nin.train
    from bench.walltime import PARTS, measure

    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "name: tiny\nsettings: {arch: cifar, width: 0.125, dataset: synthetic, epochs: 2, batch_size: 50}\n"
        "axes: {head: [gap, fc]}\nseeds: [0]\n"
    )
    originals = (nin.train.Trainer.train_epoch, nin.store.save_checkpoint, nin.train.profile_variant)
    import runners.run
    from runners.cli import main

    report_step = (("fixed", "report", runners.run, "_write_report"),)
    result = measure(str(spec), tmp_path / "out", ["--wandb", "disabled"], main, report_step)
    assert result["runs"] == 2 and len(list((tmp_path / "out").glob("tiny/runs/*/result.json"))) == 2
    pieces = result["pieces"]
    # Per variant: 2 train epochs, a test pass per epoch plus the final train-set pass, a checkpoint per epoch.
    assert pieces["train_epoch"]["calls"] == 4 and pieces["evaluate"]["calls"] == 6
    assert pieces["checkpoint_write"]["calls"] == 4 and pieces["model_build"]["calls"] == 2
    assert all(p["seconds"] >= 0 for p in pieces.values())
    assert set(result["parts_seconds"]) == set(PARTS) and result["parts_seconds"]["training"] > 0
    assert math.isclose(sum(result["parts_seconds"].values()), result["wall_seconds"])
    assert result["parts_seconds"]["other"] >= 0  # exclusive times never exceed the wall
    assert (nin.train.Trainer.train_epoch, nin.store.save_checkpoint, nin.train.profile_variant) == originals
    assert pieces["report"]["calls"] == 1 and runners.run._write_report.__name__ == "_write_report"
