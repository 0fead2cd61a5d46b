"""reports: results directories with known numbers → tables, statistics, plots, report.html, the CLI, a browser."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from judge import stats as rstats
from reports import load_results, words, write_report
from tests.conftest import cli
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
    for run in runs:
        if run["status"] == "ok":
            write_cam(grid_dir / "runs" / run["variant_id"])
    return grid_dir


def write_cam(run_dir: Path, n: int = 8, size: int = 32) -> None:
    """A cam.npz as nin.cam writes it: a bright square per image, a map that peaks on it, the square's box."""
    from nin.layout import CAM_FILE

    rng = np.random.default_rng(len(run_dir.name))
    corners = rng.integers(0, size - 10, (n, 2))
    boxes = np.concatenate([corners, corners + 10], axis=1).astype(np.float32)
    images = np.zeros((n, 1, size, size), np.uint8)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    maps = np.zeros((n, size, size), np.float16)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        images[i, 0, int(y0) : int(y1), int(x0) : int(x1)] = 220
        maps[i] = np.exp(-((xs - (x0 + x1) / 2) ** 2 + (ys - (y0 + y1) / 2) ** 2) / 30)
    np.savez(
        run_dir / CAM_FILE, images=images, maps=maps, boxes=boxes, classes=np.arange(n) % 10,
        predicted=np.arange(n) % 10, probability=np.full(n, 0.9, np.float32), method=np.array("cam"),
        cam_resolution=np.array([8, 8]),
    )  # fmt: skip


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
    # The stalled seed and the diverged seed are the method's outcomes: counted and averaged in (intention to treat).
    stalled = summary.loc["gap/cccp0"]
    assert (stalled["n"], stalled["stalled"], stalled["did_not_fit"]) == (3, 1, 3)  # 0.77 and 0.79 train: under 0.80
    assert stalled["test_acc_mean"] == pytest.approx(np.mean([0.75, 0.77, 0.10]))
    diverged = summary.loc["fc/cccp0"]
    assert (diverged["n"], diverged["not_ok"], diverged["runs"], diverged["missing"]) == (3, 1, 3, 0)
    assert diverged["test_acc_mean"] == pytest.approx(np.mean([0.70, 0.10, 0.72]))
    assert summary.loc["AlexNet reference", "n"] == 2
    assert pd.isna(summary.loc["AlexNet reference", "head"])


def test_effects_pair_matched_runs_and_count_the_rest(report) -> None:
    effects = pd.read_csv(report.tables["effects"])
    assert set(effects["axis"]) == {"head", "cccp"}  # the AlexNet reference's lr does not make an axis
    head = effects[(effects["axis"] == "head") & (effects["metric"] == "test_acc")].iloc[0]
    assert (head["level_a"], head["level_b"]) == ("gap", "fc")
    # The seed is the unit, over the settings cccp 2 and 0. Seed 1's fc diverged at cccp 0 and seed 2's gap stalled
    # there: both stay in their pairs with their outcomes (intention to treat), so every seed pairs at both settings.
    assert (head["n_pairs"], head["n_seeds"], head["seeds_left_out"]) == (6, 3, 0)
    assert (head["unpaired"], head["pairs_failed_training"]) == (0, 3)  # every cccp-0 pair has a run under 0.80
    by_seed = [np.mean([TEST_ACC[("gap", 2)][s] - TEST_ACC[("fc", 2)][s],
                        TEST_ACC[("gap", 0)][s] - (TEST_ACC[("fc", 0)][s] or 0.1)]) for s in range(3)]  # fmt: skip
    assert head["mean_diff"] == pytest.approx(np.mean(by_seed))
    assert pd.notna(head["ci_low"]) and pd.isna(head["ci_note"])
    assert "t(0.975, n_seeds−1)" in head["method"] and "unadjusted" in head["method"]
    gap = effects[(effects["axis"] == "head") & (effects["metric"] == "gap_acc")].iloc[0]
    gaps = [np.mean([GAP[("gap", 2)][s] - GAP[("fc", 2)][s], GAP[("gap", 0)][s] - GAP[("fc", 0)][s]])
            for s in range(3)]  # fmt: skip
    assert gap["mean_diff"] == pytest.approx(np.mean(gaps))
    cccp = effects[(effects["axis"] == "cccp") & (effects["metric"] == "test_acc")].iloc[0]
    assert (str(cccp["level_a"]), str(cccp["level_b"])) == ("2", "0")  # the grid file's order
    assert (cccp["n_pairs"], cccp["unpaired"], cccp["pairs_failed_training"], cccp["n_seeds"]) == (6, 0, 6, 3)
    sentence = next(s for s in report.sentences if s.startswith("head gap vs fc: "))
    assert ", 3 seeds, 6 pairs)" in sentence and "3 pairs with a failed training run, kept in" in sentence


def test_effects_intervals_are_over_seed_means_unadjusted(tmp_path: Path) -> None:
    # Three seeds × two cccp settings: the head effect's interval has n_seeds − 1 = 2 degrees of freedom.
    diffs = {(0, 0): 0.030, (0, 2): 0.010, (1, 0): 0.025, (1, 2): 0.025, (2, 0): 0.040, (2, 2): 0.020}
    runs = []
    for (seed, cccp), diff in diffs.items():
        runs += [result(0.80 + diff, 0.85 + diff, head="gap", cccp=cccp, seed=seed),
                 result(0.80, 0.85, head="fc", cccp=cccp, seed=seed)]  # fmt: skip
    effects = rstats.effects(load_results(write_grid(tmp_path, "seeds", runs, axes={"head": ["gap", "fc"]})))
    head = effects[(effects["axis"] == "head") & (effects["metric"] == "test_acc")].iloc[0]
    by_seed = [np.mean([diffs[(s, 0)], diffs[(s, 2)]]) for s in range(3)]
    mean, sd, low, high = _expected_interval(by_seed)
    assert (head["n_seeds"], head["n_pairs"]) == (3, 6)
    assert (head["mean_diff"], head["std_diff"]) == pytest.approx((mean, sd))
    assert (head["ci_low"], head["ci_high"]) == pytest.approx((low, high))
    sentence = next(s for s in words.effect_sentences(effects) if s.startswith("head gap vs fc"))
    expected = f"(95% CI {100 * low:+.1f} to {100 * high:+.1f}, 3 seeds, 6 pairs): the unadjusted CI excludes zero"
    assert expected in sentence


def test_plots_are_png_files(report) -> None:
    # epochs_to_stop says these results predate stop_reason (tests/nin/test_plateau.py draws one with runs in it).
    assert set(report.plots) == {"accuracy_vs_params", "accuracy_vs_macs", "gap_per_variant", "learning_curves",
                                 "epochs_to_stop", "effects", "cam"}  # fmt: skip
    for path in report.plots.values():
        assert path.parent.name == "plots" and path.suffix == ".png"
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000, path


def test_page_is_self_contained_and_states_what_it_did(report, grid: Path) -> None:
    page = report.html.read_text()
    assert report.html == grid / "report" / "report.html"
    assert "nin-ablate report: paper" in page and "15 of 16 variants done" in page
    assert page.count("src='data:image/png;base64,") == len(report.plots) == 7  # every plot inlined, the CAM figure too
    assert "src='http" not in page and 'src="http' not in page
    assert "head gap vs fc: test accuracy" in page
    assert "stays in its pairs with its outcome" in page  # the failed-training decision
    # a rate per variant: at cccp 0 every run ends below the 80% criterion, one GAP run stalled, one FC run diverged
    assert "<h2>Trainability per variant</h2>" in page and "GAP, cccp 0: 3 of 3 seeds did not fit" in page
    sensitivity = page.split("<h2>Sensitivity analysis")[1].split("<h2>")[0]
    assert "outside the report" in sensitivity and "class='word" not in sensitivity  # numbers, no verdict words
    assert not any(word in sensitivity for word in ("supported", "contradicted", "equivalent", "inconclusive"))
    assert "provided each claim" in page and "the 5% guarantee is weakened" in page  # the 5% statement's condition
    effects = page.split("<h2>Effects</h2>")[1].split("<h2>")[0]
    assert "ci_note" not in effects and "ci_excludes_zero" not in effects and "Pairs with failed training" in effects
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
    text = "\n".join(words.effect_sentences(effects))
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


def test_cli_report_prints_the_page_path(tmp_path: Path) -> None:
    grid_dir = write_grid(tmp_path, "cli", _grid_results()[:3])
    done = cli("report", str(grid_dir))
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
    done = cli("report", str(target))
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
    # The class-map figure is drawn on the page (in the screenshot, not just in the HTML): its maps are the only
    # saturated dark blue (the "jet" colour map's low end over black) in bulk; link text is a few hundred pixels.
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    jet_blue = (pixels[..., 0] < 20) & (pixels[..., 1] < 20) & (pixels[..., 2] > 50)
    assert jet_blue.sum() > 20_000, jet_blue.sum()
    rows = np.nonzero(jet_blue.any(axis=1))[0]
    page = report.html.read_text()
    assert "<h2>Class maps</h2>" in page and "alt='cam'" in page
    assert rows.min() < 3_000  # near the top: right after the verdicts


def test_a_setting_that_does_not_apply_on_one_side_splits_the_comparison(tmp_path: Path) -> None:
    # gap_relu exists only for the GAP head (null for fc): gap vs fc is compared once per gap_relu level.
    runs = []
    for seed, (linear, relu, fc) in enumerate([(0.95, 0.10, 0.97), (0.96, 0.50, 0.98), (0.94, 0.40, 0.99)]):
        for acc, gap_relu, head in ((linear, False, "gap"), (relu, True, "gap"), (fc, None, "fc")):
            res = result(acc, acc + 0.01 if acc > 0.5 else acc, seed=seed, head=head, gap_relu=gap_relu)
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
    # seed 0's ReLU head never left chance, seeds 1-2's never reached the criterion: all kept in their pairs
    assert on.pairs_failed_training == 3 and on.n_pairs == 3
    relu_axis = effects[(effects["axis"] == "gap_relu") & (effects["metric"] == "test_acc")].iloc[0]
    assert relu_axis["n_pairs"] == 3 and pd.isna(relu_axis["subset"])  # the stalled seed is paired too


# ---- no interval from fewer than 3 values ------------------------------------------------------------------------
def test_no_interval_from_fewer_than_three_values(report) -> None:
    two = rstats.t_interval([0.80, 0.84])
    assert two["n"] == 2 and two["std"] == pytest.approx(np.std([0.80, 0.84], ddof=1))
    assert math.isnan(two["ci_low"]) and math.isnan(two["ci_high"])
    three = rstats.t_interval([0.80, 0.84, 0.82])
    assert not math.isnan(three["ci_low"])
    summary = pd.read_csv(report.tables["summary"]).set_index("label")
    # AlexNet reference: 2 runs: sd, no interval, "n < 3".
    for label in ("AlexNet reference",):
        row = summary.loc[label]
        assert row["n"] == 2 and pd.notna(row["test_acc_std"]) and row["ci_note"] == "n < 3"
        assert pd.isna(row["test_acc_ci_low"]) and pd.isna(row["gap_acc_ci_high"])
    assert pd.isna(summary.loc["gap/cccp2", "ci_note"])  # 3 runs: an interval, no note


def test_intervals_end_where_the_metric_does(tmp_path: Path) -> None:
    accuracies = [0.99, 1.0, 0.93]  # mean 0.973, sd 0.038: the plain t interval ends at 1.068
    values = np.asarray(accuracies)
    half = sps.t.ppf(0.975, 2) * values.std(ddof=1) / math.sqrt(3)
    assert values.mean() + half > 1  # the case this guards
    plain = rstats.t_interval(accuracies)
    assert plain["ci_high"] == pytest.approx(values.mean() + half)  # unbounded metrics keep the t interval
    cut = rstats.t_interval(accuracies, rstats.metric_range("test_acc"))
    assert cut["ci_high"] == 1.0 and cut["ci_low"] == pytest.approx(values.mean() - half)
    assert (cut["mean"], cut["std"]) == (plain["mean"], plain["std"])
    assert rstats.metric_range("gap_acc", difference=True) == (-2.0, 2.0) and rstats.metric_range("gap_loss") is None
    # Through the report: the summary's accuracy interval stops at 100%.
    runs = [result(acc, 1.0, head="gap", seed=seed) for seed, acc in enumerate(accuracies)]
    summary = rstats.summarize(load_results(write_grid(tmp_path, "g", runs)))
    row = summary.iloc[0]
    assert row["test_acc_ci_high"] == 1.0 and row["test_acc_ci_low"] == pytest.approx(values.mean() - half)


def test_effects_with_two_pairs_have_no_interval_and_do_not_set_the_plot_scale(tmp_path: Path) -> None:
    from reports import plots

    # gap at cccp 0 and 2 in 3 seeds (cccp: 3 tight pairs); fc at cccp 0 in seeds 0-1 only (head: 2 pairs, +60).
    runs = [result(0.80, 0.85, head="gap", cccp=0, seed=s) for s in range(3)]
    runs += [result(0.81 + 0.002 * s, 0.85, head="gap", cccp=2, seed=s) for s in range(3)]
    runs += [result(0.20, 0.25, head="fc", cccp=0, seed=s) for s in range(2)]
    effects = rstats.effects(load_results(write_grid(tmp_path, "few", runs, axes={"head": ["gap", "fc"]})))
    head = effects[(effects["axis"] == "head") & (effects["metric"] == "test_acc")].iloc[0]
    assert head["n_pairs"] == 2 and head["ci_note"] == "n < 3" and pd.isna(head["ci_low"])
    assert head["mean_diff"] == pytest.approx(0.6) and pd.isna(head["ci_excludes_zero"])
    sentence = next(s for s in words.effect_sentences(effects) if s.startswith("head gap vs fc"))
    assert "+60.0 points (2 seeds, 2 pairs; n < 3 seeds: too few for an interval)" in sentence
    cccp = effects[(effects["axis"] == "cccp") & (effects["metric"] == "test_acc")].iloc[0]
    assert cccp["n_pairs"] == 3 and pd.notna(cccp["ci_low"]) and cccp["ci_note"] == ""
    figure = plots.effect_plot(effects)
    low, high = figure.axes[0].get_xlim()
    # The axis spans the cccp interval and zero, not the 60-point mean that has no interval.
    assert low <= min(0, 100 * cccp["ci_low"]) and high >= max(0, 100 * cccp["ci_high"]) and high - low < 5


# ---- paper tables -------------------------------------------------------------------------------------------------
def test_ablation_markdown_rows_labels_bold_and_reference_last(report) -> None:
    text = report.documents["md"].read_text()
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert lines[0] == "| Variant | Params | MACs (M) | Test accuracy (%) | Overfitting gap (points) |"
    rows = [line.split(" | ")[0].lstrip("| ") for line in lines[2:]]
    # The grid file's order (head gap, fc; cccp 2, 0), then a separator row and the reference last.
    assert rows == ["GAP, cccp 2", "GAP, cccp 0", "FC, cccp 2", "FC, cccp 0", "*Reference*", "AlexNet (reference)"]
    gap2, gap0, fc2, fc0, reference = lines[2], lines[3], lines[4], lines[5], lines[7]
    mean, sd = 100 * np.mean(TEST_ACC[("gap", 2)]), 100 * np.std(TEST_ACC[("gap", 2)], ddof=1)
    gap_mean, gap_sd = 100 * np.mean(GAP[("gap", 2)]), 100 * np.std(GAP[("gap", 2)], ddof=1)
    # Best accuracy (82.0): gap/cccp2. Smallest gap among variants with n >= 3: gap/cccp0 (1.3: its stalled seed's
    # gap of 0 is in the mean), which also has the fewest params. MACs tie across NiN: all bold.
    assert f"**{mean:.1f} ± {sd:.1f} (3)**" in gap2 and f"{gap_mean:.1f} ± {gap_sd:.1f} (3)" in gap2
    assert gap2.count("**") == 4 and "**1,792,166**" in gap0 and gap0.count("**") == 6
    assert "**1.3 ± 1.2 (3)**" in gap0
    assert fc2.count("**") == 2 and fc0.count("**") == 2 and "(3)" in fc0  # fc/cccp0: the diverged run is in
    assert "46,764,746" in reference and "**" not in reference


def test_ablation_tex_compiles_with_pdflatex_and_renders(report, tmp_path: Path) -> None:
    tex = report.documents["tex"].read_text()
    tex.encode("ascii")
    lines = tex.splitlines()
    assert "\\toprule" in tex and tex.count("\\midrule") == 2
    assert "AlexNet (reference)" in lines[lines.index("\\bottomrule") - 1]
    assert "\\textbf{" in tex and "$\\pm$" in tex
    pdflatex, pdftoppm = shutil.which("pdflatex"), shutil.which("pdftoppm")
    if pdflatex is None or pdftoppm is None:
        pytest.skip("no pdflatex/pdftoppm: install Debian's texlive-latex-base, texlive-latex-recommended and "
                    "poppler-utils (make browser does, as root)")  # fmt: skip
    (tmp_path / "ablation.tex").write_text(tex)
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\usepackage[margin=1.5cm]{geometry}"
        "\\begin{document}\\input{ablation.tex}\\end{document}\n"
    )
    done = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Missing character" not in (tmp_path / "doc.log").read_text()
    subprocess.run([pdftoppm, "-png", "-r", "60", "-singlefile", "doc.pdf", "page"], cwd=tmp_path, check=True,
                   timeout=60)  # fmt: skip
    from PIL import Image

    page = np.asarray(Image.open(tmp_path / "page.png").convert("L"))
    dark = (page < 128).mean()
    assert 0.005 < dark < 0.2  # text and rules on a white page: neither blank nor a black box


def test_cli_report_format_prints_the_table_and_writes_nothing(tmp_path: Path, report) -> None:
    grid_dir = write_grid(tmp_path, "fmt", _grid_results(), axes={"head": ["gap", "fc"], "cccp": [2, 0]})
    before = sorted(p.relative_to(grid_dir) for p in grid_dir.rglob("*"))
    md = cli("report", str(grid_dir), "--format", "md")
    tex = cli("report", str(grid_dir), "--format", "tex")
    assert md.returncode == 0 and tex.returncode == 0, md.stderr + tex.stderr
    assert md.stdout == report.documents["md"].read_text()  # the same table as the report writes
    assert tex.stdout == report.documents["tex"].read_text()
    assert md.stderr == "" and sorted(p.relative_to(grid_dir) for p in grid_dir.rglob("*")) == before
    assert not (grid_dir / "report").exists() and not (grid_dir / "wandb").exists()
    bad = cli("report", str(grid_dir), "--format", "pdf")
    assert bad.returncode == 2 and "--format" in bad.stderr and not (grid_dir / "report").exists()


def test_page_summary_is_readable_and_links_the_full_csv(report) -> None:
    page = report.html.read_text()
    summary = page.split("<h2>Summary per variant (across seeds)</h2>")[1].split("<h2>")[0]
    header = summary.split("</tr>")[0]
    assert header.index("Variant") < header.index("Params") < header.index("Test accuracy")
    assert "<a href='summary.csv'>summary.csv</a>" in summary and "group_id" not in header
    assert "<td>GAP, cccp 2</td>" in summary and "d2l-gap" not in summary  # labels, no ids


def test_report_run_carries_the_verdicts(report, tmp_path: Path) -> None:
    from reports.wandb_report import log_report
    from tests.wandb_records import offline_runs

    log_report(report.html.parent, "paper", "offline", tmp_path, report.tables, {}, verdicts=report.verdicts)
    (run,) = offline_runs(tmp_path)
    assert run.exit_code == 0
    assert {k: v for k, v in run.summary.items() if k.startswith("verdict/")} == {
        f"verdict/{key}": word for key, word in report.verdicts.items()
    }
    assert run.summary["verdict/gap_params_vs_fc"] == "supported"
    for key in ("gap_trains_as_often_as_fc", "gap_epochs_to_fit_vs_fc", "gap_seconds_to_fit_vs_fc"):  # the seeds'
        assert run.summary[f"verdict/{key}"] in ("supported", "contradicted", "equivalent", "inconclusive")
    (row,) = run.history
    assert row["tables/verdicts"]["nrows"] == len(pd.read_csv(report.tables["verdicts"]))
    assert row["tables/sensitivity"]["nrows"] == len(pd.read_csv(report.tables["sensitivity"])) > 0
