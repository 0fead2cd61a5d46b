"""reports.verdicts: each outcome of the rules on constructed result sets with known numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from reports import load_results, stats, write_report
from reports.verdicts import CSV_COLUMNS, NOT_TESTED, exact_head_note, verdicts
from tests.reports_fixtures import PARAMS, paired_runs, result, write_grid


def _verdicts(tmp_path: Path, runs: list[dict], name: str = "g", **spec) -> pd.DataFrame:
    results = load_results(write_grid(tmp_path, name, runs, **spec))
    return verdicts(results, stats.effects(results)).set_index("key")


def _t_interval(diffs: list[float]) -> tuple[float, float, float]:
    values = np.asarray(diffs)
    half = sps.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


def test_supported_when_the_interval_excludes_zero_in_the_claimed_direction(tmp_path: Path) -> None:
    diffs = {0: 0.02, 1: 0.03, 2: 0.025, 3: 0.021}
    row = _verdicts(tmp_path, paired_runs(0.80, diffs)).loc["gap_accuracy_vs_fc"]
    mean, low, high = _t_interval(list(diffs.values()))
    assert low > 0  # the hand-computed interval lies above zero
    assert row["verdict"] == "supported"
    assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx((mean, low, high))
    assert row["n_pairs"] == 4 and pd.isna(row["seeds_needed"])
    assert row["sentence"].startswith("GAP matches or beats the FC head in test accuracy: supported — ")


def test_contradicted_when_it_excludes_zero_the_other_way(tmp_path: Path) -> None:
    # GAP's train-test gap is larger than FC's in every seed: the claim "GAP reduces overfitting" is contradicted.
    frame = _verdicts(tmp_path, paired_runs(0.80, {0: 0.03, 1: 0.04, 2: 0.035}, metric="gap_acc"))
    row = frame.loc["gap_overfitting_vs_fc"]
    mean, low, high = _t_interval([0.03, 0.04, 0.035])
    assert row["verdict"] == "contradicted"
    assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx((mean, low, high))
    # Test accuracies are equal: that claim's mean is zero.
    assert frame.loc["gap_accuracy_vs_fc", "verdict"] == "inconclusive"


def test_inconclusive_says_how_many_seeds_would_resolve_the_mean(tmp_path: Path) -> None:
    # Two seeds × two cccp levels = 4 pairs, 2 per seed, with mean 0.01 and sd 0.02 (x² + y² = 0.0006).
    x = math.sqrt(0.0003)
    diffs = {(0, 0): 0.01 + x, (0, 2): 0.01 - x, (1, 0): 0.01 + x, (1, 2): 0.01 - x}
    runs = []
    for (seed, cccp), diff in diffs.items():
        runs += paired_runs(0.80, {seed: diff}, cccp=cccp)
    row = _verdicts(tmp_path, runs).loc["gap_accuracy_vs_fc"]
    values = list(diffs.values())
    assert np.mean(values) == pytest.approx(0.01) and np.std(values, ddof=1) == pytest.approx(0.02)
    # By hand: the interval's half-width t(0.975, n−1)·0.02/√n drops below |mean| = 0.01 first at n = 18:
    assert sps.t.ppf(0.975, 16) * 0.02 / math.sqrt(17) >= 0.01  # 0.01028...
    assert sps.t.ppf(0.975, 17) * 0.02 / math.sqrt(18) < 0.01  # 0.00995...
    assert row["verdict"] == "inconclusive" and row["n_pairs"] == 4
    assert row["seeds_needed"] == 9  # 18 pairs at 2 pairs per seed
    assert "about 9 seeds would resolve" in row["sentence"] and "this grid has 2 seeds" in row["sentence"]


def test_a_zero_mean_says_so_instead_of_a_seed_count(tmp_path: Path) -> None:
    row = _verdicts(tmp_path, paired_runs(0.80, {0: 0.01, 1: -0.01, 2: 0.02, 3: -0.02})).loc["gap_accuracy_vs_fc"]
    assert row["verdict"] == "inconclusive" and pd.isna(row["seeds_needed"])
    assert row["note"] == "the observed mean is zero"


def test_fewer_than_three_pairs_give_no_interval(tmp_path: Path) -> None:
    # Two pairs far from zero: any interval would have 1 degree of freedom (t = 12.7).
    row = _verdicts(tmp_path, paired_runs(0.80, {0: 0.05, 1: 0.06})).loc["gap_accuracy_vs_fc"]
    assert row["verdict"] == "inconclusive" and row["note"] == "n < 3" and row["n_pairs"] == 2
    assert row["mean"] == pytest.approx(0.055)
    assert pd.isna(row["ci_low"]) and pd.isna(row["ci_high"]) and pd.isna(row["seeds_needed"])


def test_claims_whose_axis_the_grid_lacks_are_not_tested(tmp_path: Path) -> None:
    frame = _verdicts(tmp_path, paired_runs(0.80, {0: 0.02, 1: 0.03, 2: 0.025}))
    for key in ("gap_params_vs_alexnet", "gap_overfitting_vs_alexnet", "gap_accuracy_vs_alexnet"):
        assert frame.loc[key, "verdict"] == NOT_TESTED
        assert frame.loc[key, "note"] == "no head alexnet among the NiN runs"
    for key in ("cccp_accuracy", "dropout_overfitting", "dropout_accuracy"):
        assert frame.loc[key, "verdict"] == NOT_TESTED and "the grid has no" in frame.loc[key, "note"]
    assert frame.loc["gap_localisation_vs_fc", "verdict"] == NOT_TESTED
    assert frame.loc["gap_localisation_vs_fc", "sentence"].endswith("localisation not measured (no canvas).")


def test_params_ratio_both_ways_and_mixed(tmp_path: Path) -> None:
    runs = paired_runs(0.80, {0: 0.0, 1: 0.0}, cccp=2) + paired_runs(0.80, {0: 0.0, 1: 0.0}, cccp=0)
    frame = _verdicts(tmp_path / "smaller", runs)
    row = frame.loc["gap_params_vs_fc"]
    # The fixture's counts: GAP 1,992,166 vs FC 2,053,386 at cccp 2, both 200,000 fewer at cccp 0.
    ratios = [PARAMS["gap"] / PARAMS["fc"], (PARAMS["gap"] - 200_000) / (PARAMS["fc"] - 200_000)]
    assert row["verdict"] == "supported" and row["n_pairs"] == 2
    assert row["mean"] == pytest.approx(np.mean(ratios)) and pd.isna(row["ci_low"])
    assert "the FC head is larger than GAP at 224 px input" in row["sentence"]
    assert f"{ratios[1]:.2f} (1,792,166 vs 1,853,386 at cccp 0)" in row["sentence"]

    def with_fc_params(fc_params: dict[int, int]) -> list[dict]:
        changed = [dict(r) for r in runs]
        for r in changed:
            if r["head"] == "fc":
                r["params"] = fc_params[r["cccp"]]
        return changed

    bigger = _verdicts(tmp_path / "bigger", with_fc_params({2: 1_000_000, 0: 900_000})).loc["gap_params_vs_fc"]
    assert bigger["verdict"] == "contradicted"
    assert bigger["mean"] == pytest.approx(np.mean([PARAMS["gap"] / 1_000_000, (PARAMS["gap"] - 200_000) / 900_000]))
    assert "the FC head is smaller than GAP" in bigger["sentence"]
    mixed = _verdicts(tmp_path / "mixed", with_fc_params({2: 1_000_000, 0: 5_000_000})).loc["gap_params_vs_fc"]
    assert mixed["verdict"] == "inconclusive" and "larger than GAP in some settings" in mixed["sentence"]


def test_gap_lines_use_the_grids_gap_head_and_report_the_exact_relu_head_apart(tmp_path: Path) -> None:
    runs = []
    for seed, (linear, relu) in enumerate([(0.84, 0.10), (0.85, 0.11), (0.86, 0.70), (0.85, 0.10)]):
        for acc, gap_relu, head in ((linear, False, "gap"), (relu, True, "gap"), (0.80, None, "fc")):
            run = result(acc, acc + 0.05, seed=seed, head=head, gap_relu=gap_relu)
            run["variant_id"] = run["group_id"] = f"{head}-{gap_relu}"
            run["variant_id"] += f"-s{seed}"
            runs.append(run)
    results = load_results(write_grid(tmp_path, "relu", runs, settings={"gap_relu": False}))
    frame = verdicts(results, stats.effects(results)).set_index("key")
    mean, low, _ = _t_interval([0.04, 0.05, 0.06, 0.05])  # the linear GAP rows only
    row = frame.loc["gap_accuracy_vs_fc"]
    assert row["verdict"] == "supported" and row["n_pairs"] == 4 and row["mean"] == pytest.approx(mean)
    assert row["ci_low"] == pytest.approx(low)
    note = exact_head_note(results)
    assert "stalled in 3 of 4 runs" in note and "test accuracy 70.0%" in note and "n < 3" in note


def test_a_measured_localisation_score_is_judged_like_any_metric(tmp_path: Path) -> None:
    runs = paired_runs(0.80, {0: 0.0, 1: 0.0, 2: 0.0})
    hits = {"gap": [0.62, 0.60, 0.65], "fc": [0.40, 0.41, 0.39]}
    for run in runs:
        run["loc_pointing"] = hits[run["head"]][run["seed"]]
    row = _verdicts(tmp_path, runs).loc["gap_localisation_vs_fc"]
    mean, low, high = _t_interval([0.22, 0.19, 0.26])
    assert row["verdict"] == "supported" and (row["mean"], row["ci_low"]) == pytest.approx((mean, low))


def test_report_writes_verdicts_first_and_to_csv(tmp_path: Path) -> None:
    runs = paired_runs(0.80, {0: 0.02, 1: 0.03, 2: 0.025})
    report = write_report(write_grid(tmp_path, "page", runs))
    csv = pd.read_csv(report.tables["verdicts"])
    assert tuple(csv.columns) == CSV_COLUMNS
    assert csv.loc[csv["claim"] == "GAP matches or beats the FC head in test accuracy", "verdict"].item() == "supported"
    page = report.html.read_text()
    assert page.index("<h2>Verdicts</h2>") < page.index("How to read this") < page.index("<h2>Effects</h2>")
    assert "<span class='word supported'>supported</span>" in page
    assert report.sentences[0].startswith("GAP has fewer parameters than the FC head: supported")
    assert report.verdicts["gap_accuracy_vs_fc"] == "supported"
    assert report.verdicts["dropout_accuracy"] == NOT_TESTED
