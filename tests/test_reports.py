"""reports: results directories with known numbers → tables, statistics, plots, report.html, the CLI, a browser."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from reports import load_results, write_report
from reports import stats as rstats
from tests.conftest import REPO, run_cli
from tests.reports_fixtures import result, write_grid, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--window-size=1280,4000",
)  # fmt: skip

# head × cccp × 3 seeds with known test accuracies (train accuracy = test + gap).
TEST_ACC = {
    ("gap", 2): [0.80, 0.82, 0.84],
    ("fc", 2): [0.78, 0.79, 0.83],
    ("gap", 0): [0.75, 0.77, 0.10],  # seed 2 stalled at chance (10 classes)
    ("fc", 0): [0.70, None, 0.72],  # seed 1 diverged
}
GAP = {("gap", 2): [0.01, 0.02, 0.03], ("fc", 2): [0.05, 0.04, 0.06], ("gap", 0): [0.02, 0.02, 0.0]}
GAP[("fc", 0)] = [0.08, 0.0, 0.07]


def _grid_results() -> list[dict]:
    out = []
    for (head, cccp), accs in TEST_ACC.items():
        for seed, acc in enumerate(accs):
            if acc is None:
                out.append(result(0.1, 0.1, status="diverged", head=head, cccp=cccp, seed=seed))
            else:
                out.append(result(acc, acc + GAP[(head, cccp)][seed], head=head, cccp=cccp, seed=seed))
    out += [result(0.86, 0.90, model="alexnet", lr=0.01, seed=s) for s in (0, 1)]
    return out


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = _grid_results()
    expected = [r["variant_id"] for r in runs] + ["d2l-gap-cccp2-do1-lr0.1-s3", "broken-run"]
    grid_dir = write_grid(
        tmp_path_factory.mktemp("out"), "paper", runs, expected=expected, description="known numbers",
        axes={"head": ["gap", "fc"], "cccp": [2, 0]},
    )  # fmt: skip
    # Never results: a temp file of an interrupted write, and a run with metrics but no result.json yet.
    first = grid_dir / "runs" / runs[0]["variant_id"]
    (first / ".result.json.tmp-x1y2").write_text(json.dumps({**runs[0], "test_acc": 0.99}))
    unfinished = grid_dir / "runs" / "d2l-gap-cccp2-do1-lr0.1-s3"
    unfinished.mkdir()
    (unfinished / "metrics.jsonl").write_text('{"epoch": 1, "train_acc": 0.5, "test_acc": 0.5}\n')
    broken = grid_dir / "runs" / "broken-run"
    broken.mkdir()
    (broken / "result.json").write_text('{"variant_id": "broken-run", "status": "ok", "test_acc"')
    return grid_dir


@pytest.fixture(scope="module")
def report(grid: Path):
    return write_report(grid)


def _expected_interval(values: list[float]) -> tuple[float, float, float, float]:
    values = np.asarray(values)
    mean, sd, n = values.mean(), values.std(ddof=1), len(values)
    half = sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half


def test_results_table_has_every_run_and_ignores_temp_and_unfinished(report, grid: Path) -> None:
    runs = pd.read_csv(report.tables["results"])
    assert len(runs) == 12 + 2 + 1  # NiN runs, AlexNet reference, the unreadable one
    first = runs[runs["variant_id"] == "d2l-gap-cccp2-do1-lr0.1-s0"].iloc[0]
    assert first["test_acc"] == pytest.approx(0.80)  # not the temp file's 0.99
    assert "d2l-gap-cccp2-do1-lr0.1-s3" not in set(runs["variant_id"])
    assert set(runs.loc[runs["status"] != "ok", "variant_id"]) == {"d2l-fc-cccp0-do1-lr0.1-s1", "broken-run"}
    assert runs.loc[runs["variant_id"] == "broken-run", "status"].item() == "unreadable"
    assert runs.loc[runs["variant_id"] == "d2l-gap-cccp0-do1-lr0.1-s2", "stalled"].item()
    assert runs["stalled"].sum() == 1
    results = load_results(grid)
    assert results.unfinished == ["d2l-gap-cccp2-do1-lr0.1-s3"]
    assert results.done_line() == "15 of 16 variants done: 1 diverged, 13 ok, 1 unreadable"


def test_summary_means_std_and_t_intervals(report) -> None:
    summary = pd.read_csv(report.tables["summary"]).set_index("label")
    row = summary.loc["gap/cccp2"]
    mean, sd, low, high = _expected_interval(TEST_ACC[("gap", 2)])
    assert (row["n"], row["stalled"], row["not_ok"]) == (3, 0, 0)
    assert row["test_acc_mean"] == pytest.approx(mean)
    assert row["test_acc_std"] == pytest.approx(sd)
    assert (row["test_acc_ci_low"], row["test_acc_ci_high"]) == pytest.approx((low, high))
    gap_mean, _, gap_low, gap_high = _expected_interval(GAP[("gap", 2)])
    assert (row["gap_acc_mean"], row["gap_acc_ci_low"], row["gap_acc_ci_high"]) == pytest.approx(
        (gap_mean, gap_low, gap_high)
    )
    assert row["params"] == 1_992_166 and row["macs"] == 762_000_000
    # The stalled seed and the diverged seed are counted, not averaged in.
    stalled = summary.loc["gap/cccp0"]
    assert (stalled["n"], stalled["stalled"]) == (2, 1)
    assert stalled["test_acc_mean"] == pytest.approx(0.76)
    diverged = summary.loc["fc/cccp0"]
    assert (diverged["n"], diverged["not_ok"], diverged["runs"]) == (2, 1, 3)
    assert diverged["test_acc_mean"] == pytest.approx(0.71)
    assert summary.loc["AlexNet reference", "n"] == 2
    assert pd.isna(summary.loc["AlexNet reference", "head"])


def test_effects_pair_matched_runs_and_count_the_rest(report) -> None:
    effects = pd.read_csv(report.tables["effects"])
    assert set(effects["axis"]) == {"head", "cccp"}  # the AlexNet reference's lr does not make an axis
    head = effects[(effects["axis"] == "head") & (effects["metric"] == "test_acc")].iloc[0]
    assert (head["level_a"], head["level_b"]) == ("gap", "fc")
    # cccp2 seeds 0-2 pair; cccp0 seed 0 pairs, seed 1's fc diverged (gap left unpaired), seed 2's gap stalled.
    diffs = [0.80 - 0.78, 0.82 - 0.79, 0.84 - 0.83, 0.75 - 0.70]
    mean, sd, low, high = _expected_interval(diffs)
    assert (head["n_pairs"], head["unpaired"], head["stalled"]) == (4, 1, 1)
    assert (head["mean_diff"], head["std_diff"]) == pytest.approx((mean, sd))
    assert (head["ci_low"], head["ci_high"]) == pytest.approx((low, high))
    assert head["ci_excludes_zero"] == (low > 0)
    assert "t(0.975" in head["method"]
    gap = effects[(effects["axis"] == "head") & (effects["metric"] == "gap_acc")].iloc[0]
    assert gap["mean_diff"] == pytest.approx(np.mean([0.01 - 0.05, 0.02 - 0.04, 0.03 - 0.06, 0.02 - 0.08]))
    cccp = effects[(effects["axis"] == "cccp") & (effects["metric"] == "test_acc")].iloc[0]
    assert (str(cccp["level_a"]), str(cccp["level_b"])) == ("2", "0")  # the grid file's order
    assert (cccp["n_pairs"], cccp["unpaired"], cccp["stalled"]) == (4, 1, 1)
    expected = np.mean([0.80 - 0.75, 0.82 - 0.77, 0.78 - 0.70, 0.83 - 0.72])
    assert cccp["mean_diff"] == pytest.approx(expected)
    sentence = next(s for s in report.sentences if s.startswith("head gap vs fc: "))
    verdict = "the CI excludes zero" if low > 0 else "the CI includes zero"
    assert (
        f"test accuracy {100 * mean:+.1f} points (95% CI {100 * low:+.1f} to {100 * high:+.1f}, 4 pairs): " in sentence
    )
    assert verdict in sentence and "1 run left out without a pair" in sentence


def test_plots_are_png_files(report) -> None:
    assert set(report.plots) == {"accuracy_vs_params", "accuracy_vs_macs", "gap_per_variant", "learning_curves",
                                 "effects"}  # fmt: skip
    for path in report.plots.values():
        assert path.parent.name == "plots" and path.suffix == ".png"
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000, path


def test_page_is_self_contained_and_states_what_it_did(report, grid: Path) -> None:
    page = report.html.read_text()
    assert report.html == grid / "report" / "report.html"
    assert "nin-ablate report: paper" in page and "15 of 16 variants done" in page
    assert page.count("src='data:image/png;base64,") == 5
    assert "src='http" not in page and 'src="http' not in page
    assert "head gap vs fc: test accuracy" in page
    assert "left out of every mean, interval and effect" in page  # the stalled-run decision
    assert "t(0.975, n−1)" in page  # the method
    not_ok = page.split("Runs that did not finish ok")[1].split("<h2>")[0]
    assert "d2l-fc-cccp0-do1-lr0.1-s1" in not_ok and "diverged" in not_ok and "broken-run" in not_ok


def test_other_varying_keys_become_axes_and_levels_keep_their_type(tmp_path: Path) -> None:
    runs = [
        result(0.8 + 0.01 * seed + (0.02 if head == "gap" else 0) - lr, 0.9, head=head, cccp=cccp, dropout=do,
               lr=lr, seed=seed)
        for head in ("gap", "fc") for cccp in (1, 2) for do in (True, False) for lr in (0.1, 0.05) for seed in (0, 1)
    ]  # fmt: skip
    results = load_results(write_grid(tmp_path, "wide", runs))
    effects = rstats.effects(results)
    assert set(effects["axis"]) == {"head", "cccp", "dropout", "lr"}
    head = effects[(effects["axis"] == "head") & (effects["metric"] == "test_acc")].iloc[0]
    # Without a grid file's order levels sort by value: fc vs gap, over 2 cccp × 2 dropout × 2 lr × 2 seeds pairs.
    assert (head["level_a"], head["level_b"]) == ("fc", "gap")
    assert (head["n_pairs"], head["unpaired"], head["mean_diff"]) == (16, 0, pytest.approx(-0.02))
    text = "\n".join(rstats.sentences(effects))
    assert "dropout on vs off: " in text and "cccp 1 vs 2: " in text and "lr 0.05 vs 0.1: " in text


def test_a_setting_that_moves_with_the_axis_is_named_as_confounded(tmp_path: Path) -> None:
    runs = [result(0.8, 0.85, arch="d2l", image_size=224, seed=s) for s in (0, 1)]
    runs += [result(0.7, 0.75, arch="cifar", image_size=32, seed=s) for s in (0, 1)]
    effects = rstats.effects(load_results(write_grid(tmp_path, "arch", runs)))
    arch = effects[(effects["axis"] == "arch") & (effects["metric"] == "test_acc")].iloc[0]
    assert (arch["level_a"], arch["level_b"], arch["n_pairs"]) == ("cifar", "d2l", 2)
    assert (arch["confounded_with"], arch["mean_diff"]) == ("image_size", pytest.approx(-0.1))


def test_partial_grid_reports_what_exists(tmp_path: Path) -> None:
    runs = _grid_results()[:1]
    grid_dir = write_grid(tmp_path, "partial", runs, expected=[runs[0]["variant_id"], "a", "b", "c"])
    report = write_report(grid_dir)
    page = report.html.read_text()
    assert "1 of 4 variants done: 1 ok" in page
    assert "No axis has two levels among the NiN runs yet." in page
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in report.plots.values())


def test_importing_reports_does_not_import_torch() -> None:
    code = (
        "import sys, reports, reports.load, reports.stats, reports.plots, reports.html; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_report_prints_the_page_path(tmp_path: Path) -> None:
    grid_dir = write_grid(tmp_path, "cli", _grid_results()[:3])
    done = run_cli("report", str(grid_dir))
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip().splitlines()[-1]) == grid_dir / "report" / "report.html"
    assert (grid_dir / "report" / "summary.csv").is_file()


@pytest.mark.parametrize("case", ["missing", "empty", "no-spec-no-runs"])
def test_cli_report_refuses_what_is_not_a_results_directory(tmp_path: Path, case: str) -> None:
    target = tmp_path / "out" / "grid"
    if case != "missing":
        target.mkdir(parents=True)
    if case == "no-spec-no-runs":
        (target / "notes.txt").write_text("hello")
        write_run(target / "elsewhere", result(0.8, 0.9))  # runs one level too deep do not count
    done = run_cli("report", str(target))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(target) in lines[0] and "OUT/<grid name>" in lines[0]
    assert not (target / "report").exists()


def test_page_renders_in_headless_chromium(report, tmp_path: Path) -> None:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("no chromium binary: install Debian's 'chromium' package (apt-get install -y chromium)")
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--screenshot={shot}", report.html.resolve().as_uri()],
        capture_output=True, text=True, timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == PNG_MAGIC
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 4000)
    # A blank or broken page compresses to a few kB; text, tables and five plots do not.
    assert len(data) > 150_000


def test_a_setting_that_does_not_apply_on_one_side_splits_the_comparison(tmp_path: Path) -> None:
    # gap_relu exists only for the GAP head (null for fc): gap vs fc is compared once per gap_relu level.
    runs = []
    for seed, (linear, relu, fc) in enumerate([(0.95, 0.10, 0.97), (0.96, 0.50, 0.98), (0.94, 0.40, 0.99)]):
        for acc, gap_relu, head in ((linear, False, "gap"), (relu, True, "gap"), (fc, None, "fc")):
            res = result(acc, acc + 0.01, seed=seed, head=head, gap_relu=gap_relu)
            res["variant_id"] = f"{head}-{gap_relu}-s{seed}"
            runs.append(res)
    grid = write_grid(tmp_path, "na", runs, axes={"head": ["gap", "fc"]})
    effects = pd.read_csv(write_report(grid).tables["effects"])
    head = effects[(effects["axis"] == "head") & (effects["metric"] == "test_acc")]
    by_subset = {row.subset: row for row in head.itertuples()}
    assert set(by_subset) == {"gap_relu=on", "gap_relu=off"}
    off = by_subset["gap_relu=off"]
    assert off.n_pairs == 3 and off.mean_diff == pytest.approx(np.mean([0.95 - 0.97, 0.96 - 0.98, 0.94 - 0.99]))
    on = by_subset["gap_relu=on"]
    assert on.stalled == 1 and on.n_pairs == 2  # seed 0's ReLU head never left chance
    relu_axis = effects[(effects["axis"] == "gap_relu") & (effects["metric"] == "test_acc")].iloc[0]
    assert relu_axis["n_pairs"] == 2 and pd.isna(relu_axis["subset"])
