"""judge.verdicts: each rule's outcomes on constructed result sets, with the numbers computed by hand.

The grids here vary the head only (GAP vs FC, plus cccp where a test needs settings), so the report's family is the
five claims such a grid tests (overfitting, accuracy, trainability, and epochs and wall time to the criterion, each vs
FC): each interval is at 1 − 0.05/5 = 99%.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from judge import stats
from judge.load import FIT_ACCURACY, STALL_MARGIN
from judge.verdicts import (
    DEFAULT_MARGINS,
    NOT_TESTED,
    decide,
    exact_head,
    parse_margins,
    seeds_needed,
    verdicts,
)
from reports import load_results, words, write_report
from reports.words import CSV_COLUMNS
from tests.reports_fixtures import PARAMS, paired_runs, result, write_grid

DELTA = DEFAULT_MARGINS["test_acc"]
K = 5  # a head-only grid's family: overfitting, accuracy, trainability, epochs and wall time to fit, vs FC
LEVEL = 1 - 0.05 / K


def _verdicts(tmp_path: Path, runs: list[dict], name: str = "g", override=None, **spec) -> pd.DataFrame:
    return _said(load_results(write_grid(tmp_path, name, runs, **spec)), override)


def _said(results, override=None) -> pd.DataFrame:
    """The verdicts as the report states them: judge.verdicts' records, in reports.words' sentences."""
    return words.table(verdicts(results, override)).set_index("key")


def _interval(values: list[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval at `level`, by hand."""
    x = np.asarray(values)
    half = sps.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


# ---- the rule read from one interval (decide), each branch by hand ---------------------------------------------
@pytest.mark.parametrize(
    ("rule", "low", "high", "direction", "expected"),
    [
        ("superiority", 0.002, 0.03, +1, ("supported", "")),
        ("superiority", 0.002, 0.008, +1, ("supported", "smaller than the margin")),
        ("superiority", -0.03, -0.002, +1, ("contradicted", "")),
        ("superiority", -0.008, -0.001, +1, ("contradicted", "smaller than the margin")),
        ("superiority", -0.008, 0.009, +1, ("equivalent", "")),
        ("superiority", -0.008, 0.012, +1, ("inconclusive", "")),
        ("superiority", -0.03, -0.002, -1, ("supported", "")),  # "reduces": an interval below zero supports it
        ("superiority", 0.002, 0.03, -1, ("contradicted", "")),
        ("non-inferiority", -0.009, 0.03, +1, ("supported", "")),
        ("non-inferiority", -0.009, 0.009, +1, ("supported", "equivalent")),
        ("non-inferiority", -0.03, -0.011, +1, ("contradicted", "")),
        ("non-inferiority", -0.011, 0.005, +1, ("inconclusive", "")),
        ("non-inferiority", -0.03, -0.01, +1, ("inconclusive", "")),  # ends exactly at −δ: not wholly below
        ("non-inferiority", -0.01, 0.02, +1, ("inconclusive", "")),  # starts exactly at −δ: not above it
    ],
)
def test_decide_reads_each_rule_from_one_interval(rule, low, high, direction, expected):
    assert decide(rule, low, high, DELTA, direction) == expected


def test_seeds_needed_is_the_first_seed_count_whose_adjusted_interval_resolves():
    # Superiority, mean 0.03 (three margins) at a seed-level sd of 0.05: it resolves once the interval excludes 0.
    level = 1 - 0.05 / 7
    n = seeds_needed("superiority", 0.03, 0.05, DELTA, +1, level)
    t = lambda k: sps.t.ppf(0.5 + level / 2, k - 1)  # noqa: E731
    assert t(n) * 0.05 / math.sqrt(n) < 0.03 <= t(n - 1) * 0.05 / math.sqrt(n - 1)
    # Non-inferiority at mean 0: resolves when the interval's lower end rises above −δ.
    m = seeds_needed("non-inferiority", 0.0, 0.02, DELTA, +1, level)
    assert t(m) * 0.02 / math.sqrt(m) < DELTA <= t(m - 1) * 0.02 / math.sqrt(m - 1)
    assert seeds_needed("superiority", 0.01, 0.0, DELTA, +1, level) is None  # no spread: nothing to say


# ---- whole reports --------------------------------------------------------------------------------------------
def test_non_inferiority_supported_with_the_adjusted_interval_and_family(tmp_path: Path) -> None:
    diffs = {0: 0.02, 1: 0.03, 2: 0.025, 3: 0.021}
    row = _verdicts(tmp_path, paired_runs(0.80, diffs)).loc["gap_accuracy_vs_fc"]
    mean, low, high = _interval(list(diffs.values()))
    _, plain_low, plain_high = _interval(list(diffs.values()), 0.95)
    assert low > -DELTA and high > DELTA  # by hand: above −δ, not inside ±δ
    assert (row["verdict"], row["qualifier"], row["rule"], row["margin"]) == ("supported", "", "non-inferiority", DELTA)
    assert (row["mean"], row["ci_low_adjusted"], row["ci_high_adjusted"]) == pytest.approx((mean, low, high))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((plain_low, plain_high))
    assert (row["family_size"], row["confidence_adjusted"]) == (K, pytest.approx(LEVEL))
    assert (row["n_seeds"], row["n_pairs"]) == (4, 4) and pd.isna(row["seeds_needed"])
    assert row["sentence"].startswith("GAP matches or beats the FC head in test accuracy: supported — "
                                      "non-inferiority, margin 1 point; test accuracy +2.4 points (99.00% CI")


def test_non_inferiority_equivalent_contradicted_and_inconclusive(tmp_path: Path) -> None:
    close = {0: 0.001, 1: -0.002, 2: 0.0, 3: 0.002}
    row = _verdicts(tmp_path / "a", paired_runs(0.80, close)).loc["gap_accuracy_vs_fc"]
    _, low, high = _interval(list(close.values()))
    assert -DELTA < low and high < DELTA and (row["verdict"], row["qualifier"]) == ("supported", "equivalent")
    assert "supported (equivalent)" in row["sentence"]
    worse = {0: -0.05, 1: -0.04, 2: -0.045, 3: -0.05}
    assert _interval(list(worse.values()))[2] < -DELTA
    assert _verdicts(tmp_path / "b", paired_runs(0.80, worse)).loc["gap_accuracy_vs_fc", "verdict"] == "contradicted"
    spanning = {0: -0.03, 1: 0.01, 2: -0.015, 3: 0.005}
    row = _verdicts(tmp_path / "c", paired_runs(0.80, spanning)).loc["gap_accuracy_vs_fc"]
    mean, low, high = _interval(list(spanning.values()))
    assert low < -DELTA < high and row["verdict"] == "inconclusive"
    sd = np.std(list(spanning.values()), ddof=1)
    assert row["seeds_needed"] == seeds_needed("non-inferiority", mean, sd, DELTA, +1, LEVEL)
    assert f"a new, independent grid of about {row['seeds_needed']} seeds would resolve it" in row["sentence"]
    assert "looks twice without correction" in row["sentence"]  # a planning figure, never "add seeds here"
    # The page's table keeps the figure and leaves what it means to its "How to read this" (said once, not per row).
    assert row["note"] == f"planning figure: a new grid of about {row['seeds_needed']} seeds would resolve it"


def test_superiority_on_overfitting_each_outcome(tmp_path: Path) -> None:
    cases = {
        "contradicted": ({0: 0.03, 1: 0.04, 2: 0.035}, ""),  # GAP's gap larger: "GAP reduces overfitting" contradicted
        "supported": ({0: -0.03, 1: -0.04, 2: -0.035}, ""),
        "equivalent": ({0: 0.001, 1: -0.001, 2: 0.0005, 3: -0.0005}, ""),
    }
    for word, (diffs, qualifier) in cases.items():
        row = _verdicts(tmp_path / word, paired_runs(0.80, diffs, metric="gap_acc")).loc["gap_overfitting_vs_fc"]
        mean, low, high = _interval(list(diffs.values()))
        assert (row["verdict"], row["qualifier"], row["rule"]) == (word, qualifier, "superiority"), row["sentence"]
        assert (row["ci_low_adjusted"], row["ci_high_adjusted"]) == pytest.approx((low, high))
    tiny = {0: -0.0020, 1: -0.0021, 2: -0.0019, 3: -0.0020}  # significant, but far inside the margin
    row = _verdicts(tmp_path / "tiny", paired_runs(0.80, tiny, metric="gap_acc")).loc["gap_overfitting_vs_fc"]
    assert (row["verdict"], row["qualifier"]) == ("supported", "smaller than the margin")
    assert "supported (smaller than the margin)" in row["sentence"]


def test_the_seed_is_the_unit_pairs_are_averaged_within_each_seed(tmp_path: Path) -> None:
    # Three seeds × two cccp settings: six pairs, but three seed-level values and 2 degrees of freedom.
    diffs = {(0, 0): 0.030, (0, 2): 0.010, (1, 0): 0.025, (1, 2): 0.025, (2, 0): 0.040, (2, 2): 0.020}
    runs = []
    for (seed, cccp), diff in diffs.items():
        runs += paired_runs(0.80, {seed: diff}, cccp=cccp)
    row = _verdicts(tmp_path, runs).loc["gap_accuracy_vs_fc"]
    by_seed = [np.mean([diffs[(s, 0)], diffs[(s, 2)]]) for s in range(3)]
    mean, low, high = _interval(by_seed, 1 - 0.05 / (K + 1))  # a cccp axis: its claim joins the family
    assert (row["n_seeds"], row["n_pairs"]) == (3, 6)
    assert (row["mean"], row["ci_low_adjusted"], row["ci_high_adjusted"]) == pytest.approx((mean, low, high))
    pairs_as_units = _interval(list(diffs.values()), 1 - 0.05 / (K + 1))  # what 5 degrees of freedom would have claimed
    assert pairs_as_units[2] - pairs_as_units[1] < high - low


def test_a_seed_without_a_pair_at_every_setting_leaves_the_contrast(tmp_path: Path) -> None:
    runs = []
    for seed in range(4):
        for cccp in (0, 2):
            runs += paired_runs(0.80, {seed: 0.02 + 0.001 * seed + 0.002 * cccp}, cccp=cccp)
    failed = next(r for r in runs if r["seed"] == 3 and r["cccp"] == 2 and r["head"] == "fc")
    failed["status"] = "failed"
    row = _verdicts(tmp_path, runs).loc["gap_accuracy_vs_fc"]
    assert (row["n_seeds"], row["n_pairs"], row["seeds_left_out"]) == (3, 6, 1)
    by_seed = [np.mean([0.02 + 0.001 * s, 0.02 + 0.001 * s + 0.004]) for s in range(3)]
    assert row["mean"] == pytest.approx(np.mean(by_seed))
    assert "1 seed without a pair at every setting left out" in row["sentence"]


def test_fewer_than_three_seeds_give_no_interval(tmp_path: Path) -> None:
    row = _verdicts(tmp_path, paired_runs(0.80, {0: 0.05, 1: 0.06})).loc["gap_accuracy_vs_fc"]
    assert row["verdict"] == "inconclusive" and "n < 3 seeds: no interval" in row["note"] and row["n_seeds"] == 2
    assert row["mean"] == pytest.approx(0.055)
    assert pd.isna(row["ci_low_adjusted"]) and pd.isna(row["ci_low"]) and pd.isna(row["seeds_needed"])


def test_margins_come_from_the_grid_file_and_a_report_may_override_them(tmp_path: Path) -> None:
    close = {0: 0.001, 1: -0.002, 2: 0.0, 3: 0.002}
    default = _verdicts(tmp_path / "a", paired_runs(0.80, close)).loc["gap_accuracy_vs_fc"]
    assert (default["verdict"], default["qualifier"]) == ("supported", "equivalent")
    strict = {"test_acc": 0.001}  # a tenth of a point: the same interval no longer rules out a loss that large
    grid = _verdicts(tmp_path / "b", paired_runs(0.80, close), margins=strict).loc["gap_accuracy_vs_fc"]
    assert (grid["verdict"], grid["margin"]) == ("inconclusive", 0.001)
    assert "margin 0.1 points" in grid["sentence"]
    override = _verdicts(tmp_path / "c", paired_runs(0.80, close), override={"test_acc": 0.001}).loc[
        "gap_accuracy_vs_fc"]  # fmt: skip
    assert override["verdict"] == "inconclusive"
    with pytest.raises(ValueError, match="unknown margin metric 'test_loss'"):
        parse_margins({"test_loss": 0.1})
    for bad in (0, 1, -0.01, "big", True):
        with pytest.raises(ValueError, match="between 0 and 1"):
            parse_margins({"test_acc": bad})


def test_a_run_that_never_fit_is_judged_with_its_outcome_and_left_out_only_in_the_sensitivity_analysis(
    tmp_path: Path,
) -> None:
    # Five seeds; seed 4's GAP run never reached the training criterion (training accuracy 0.61 < 0.80).
    runs = paired_runs(0.90, {0: 0.002, 1: -0.001, 2: 0.001, 3: 0.0, 4: -0.30})
    for run in runs:
        if run["head"] == "gap" and run["seed"] == 4:
            run["train_acc"] = run["test_acc"] + 0.01
            run["gap_acc"] = 0.01
    results = load_results(write_grid(tmp_path, "u", runs))
    flagged = results.runs.loc[results.runs["underfit"], "variant_id"].tolist()
    assert flagged == [r["variant_id"] for r in runs if r["head"] == "gap" and r["seed"] == 4]
    row = _said(results).loc["gap_accuracy_vs_fc"]
    assert row["verdict"] == "inconclusive" and row["runs_flagged"] == 1 and row["n_seeds"] == 5
    assert row["mean"] == pytest.approx(np.mean([0.002, -0.001, 0.001, 0.0, -0.30]))  # every launched run
    assert "1 run whose training failed judged with its outcome" in row["sentence"]
    assert "verdict_without_flagged" not in CSV_COLUMNS
    sensitivity = words.sensitivity_table(__import__("judge.verdicts", fromlist=["sensitivity"]).sensitivity(results))
    sensitivity = sensitivity.set_index("key")
    without = sensitivity.loc["gap_accuracy_vs_fc"]
    assert without["mean"] == pytest.approx(np.mean([0.002, -0.001, 0.001, 0.0])) and without["n_seeds"] == 4
    assert "verdict" not in sensitivity.columns and "supported" not in without["sentence"]


@pytest.mark.parametrize(("train", "test", "training"), [
    (0.99, 0.95, "fit"), (FIT_ACCURACY, 0.75, "fit"), (FIT_ACCURACY - 0.001, 0.78, "underfit"),
    (0.50, 0.97, "underfit"),  # a high test accuracy is never read: the training set says it did not fit
    (0.1 + STALL_MARGIN + 0.001, 0.12, "underfit"), (0.1 + STALL_MARGIN, 0.90, "stalled"), (0.95, 0.10, "fit"),
])  # fmt: skip
def test_stall_and_underfit_are_decided_per_run_from_training_accuracy_alone(
    tmp_path: Path, train: float, test: float, training: str
) -> None:
    runs = [result(0.95, 0.99, seed=0, head="gap"), result(test, train, seed=1, head="gap")]
    runs[1]["gap_acc"] = train - test
    results = load_results(write_grid(tmp_path, "t", runs))
    assert results.runs.sort_values("seed")["training"].tolist() == ["fit", training]


def test_a_diverged_run_stays_in_its_pairs_at_chance_and_a_failed_one_is_missing_data(tmp_path: Path) -> None:
    runs = paired_runs(0.90, {0: 0.0, 1: 0.001, 2: -0.001, 3: 0.002})
    grid = write_grid(tmp_path, "d", runs)
    for run in runs:  # result.json as a diverged and a failed run write it: no outcomes
        if (run["seed"], run["head"]) in ((2, "gap"), (3, "fc")):
            run.update(test_acc=None, train_acc=None, gap_acc=None, running_train_acc=None)
            run.update(status="diverged") if run["head"] == "gap" else run.update(status="failed", error="OOM")
            (grid / "runs" / run["variant_id"] / "result.json").write_text(json.dumps(run))
    results = load_results(grid)
    by_id = results.runs.set_index(["head", "seed"])
    assert by_id.loc[("gap", 2), "training"] == "diverged" and by_id.loc[("gap", 2), "test_acc"] == pytest.approx(0.1)
    assert bool(by_id.loc[("gap", 2), "imputed"])  # results.csv says the chance outcome was filled in
    assert not by_id.drop(("gap", 2))["imputed"].any()
    assert by_id.loc[("fc", 3), "training"] == "missing"
    row = _said(results).loc["gap_accuracy_vs_fc"]
    assert row["n_seeds"] == 3 and row["seeds_left_out"] == 1  # seeds 0-2; seed 3 lacks its FC run
    assert row["mean"] == pytest.approx(np.mean([0.0, 0.001, 0.1 - 0.90]))
    assert "missing data" in row["sentence"]


def test_split_outcomes_show_median_and_interquartile_mean(tmp_path: Path) -> None:
    tests = [0.43, 0.79, 0.85, 0.90, 0.97]  # one seed on another branch
    runs = [result(acc, acc + 0.02, seed=seed, head="gap") for seed, acc in enumerate(tests)]
    runs += [result(acc, acc + 0.02, seed=seed, head="fc") for seed, acc in enumerate([0.90, 0.91, 0.92, 0.905,
                                                                                      0.915])]  # fmt: skip
    results = load_results(write_grid(tmp_path, "s", runs))
    summary = stats.summarize(results).set_index("label")
    gap, fc = summary.loc["gap"], summary.loc["fc"]
    assert bool(gap["split"]) and not bool(fc["split"])
    assert gap["test_acc_median"] == pytest.approx(0.85)
    assert gap["test_acc_iqm"] == pytest.approx(sps.trim_mean(tests, 0.25))
    report = write_report(results.grid_dir)
    assert "split: median 85.0, IQM" in report.html.read_text()
    assert "split: median 85.0, IQM" in report.documents["md"].read_text()


def test_claims_whose_axis_the_grid_lacks_are_not_tested_and_stay_out_of_the_family(tmp_path: Path) -> None:
    frame = _verdicts(tmp_path, paired_runs(0.80, {0: 0.02, 1: 0.03, 2: 0.025}))
    for key in ("gap_params_vs_alexnet", "gap_overfitting_vs_alexnet", "gap_accuracy_vs_alexnet"):
        assert frame.loc[key, "verdict"] == NOT_TESTED
        assert frame.loc[key, "note"] == "no head alexnet among the NiN runs"
    for key in ("cccp_accuracy", "dropout_overfitting", "dropout_accuracy"):
        assert frame.loc[key, "verdict"] == NOT_TESTED and "the grid has no" in frame.loc[key, "note"]
        assert pd.isna(frame.loc[key, "family_size"])
    assert frame.loc["gap_localisation_vs_fc", "verdict"] == NOT_TESTED
    assert frame.loc["gap_localisation_vs_fc", "sentence"].endswith("localisation not measured (no canvas).")
    assert frame["family_size"].dropna().unique().tolist() == [K]


def test_params_ratio_both_ways_and_mixed(tmp_path: Path) -> None:
    runs = paired_runs(0.80, {0: 0.0, 1: 0.0}, cccp=2) + paired_runs(0.80, {0: 0.0, 1: 0.0}, cccp=0)
    frame = _verdicts(tmp_path / "smaller", runs)
    row = frame.loc["gap_params_vs_fc"]
    # The fixture's counts: GAP 1,992,166 vs FC 2,053,386 at cccp 2, both 200,000 fewer at cccp 0.
    ratios = [PARAMS["gap"] / PARAMS["fc"], (PARAMS["gap"] - 200_000) / (PARAMS["fc"] - 200_000)]
    assert row["verdict"] == "supported" and row["n_pairs"] == 2 and row["rule"] == "exact count"
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
            run = result(acc, acc + 0.05 if acc > 0.5 else acc, seed=seed, head=head, gap_relu=gap_relu)
            run["variant_id"] = run["group_id"] = f"{head}-{gap_relu}"
            run["variant_id"] += f"-s{seed}"
            runs.append(run)
    results = load_results(write_grid(tmp_path, "relu", runs, settings={"gap_relu": False}))
    frame = _said(results)
    mean, low, _ = _interval([0.04, 0.05, 0.06, 0.05])  # the linear GAP rows only
    row = frame.loc["gap_accuracy_vs_fc"]
    assert row["verdict"] == "supported" and row["n_pairs"] == 4 and row["mean"] == pytest.approx(mean)
    assert row["ci_low_adjusted"] == pytest.approx(low)
    note = words.exact_head_note(exact_head(results))
    assert "stalled in 3 of 4 runs" in note and "test accuracy 70.0%" in note and "n < 3" in note


def test_a_measured_localisation_score_is_judged_like_any_metric(tmp_path: Path) -> None:
    runs = paired_runs(0.80, {0: 0.0, 1: 0.0, 2: 0.0})
    hits = {"gap": [0.62, 0.60, 0.65], "fc": [0.40, 0.41, 0.39]}
    for run in runs:
        run["loc_pointing"] = hits[run["head"]][run["seed"]]
    row = _verdicts(tmp_path, runs).loc["gap_localisation_vs_fc"]
    mean, low, high = _interval([0.22, 0.19, 0.26], 1 - 0.05 / (K + 1))  # the family grows by one claim
    assert row["verdict"] == "supported" and row["family_size"] == K + 1 and row["margin"] == DEFAULT_MARGINS[
        "loc_pointing"]  # fmt: skip
    assert (row["mean"], row["ci_low_adjusted"]) == pytest.approx((mean, low))


def test_report_writes_verdicts_first_and_to_csv_md_and_tex(tmp_path: Path) -> None:
    runs = paired_runs(0.80, {0: 0.02, 1: 0.03, 2: 0.025})
    report = write_report(write_grid(tmp_path, "page", runs))
    csv = pd.read_csv(report.tables["verdicts"])
    assert tuple(csv.columns) == CSV_COLUMNS
    row = csv.loc[csv["claim"] == "GAP matches or beats the FC head in test accuracy"].iloc[0]
    assert (row["verdict"], row["rule"], row["margin"]) == ("supported", "non-inferiority", DELTA)
    assert row["family_size"] == K
    assert row["ci_low_adjusted"] < row["ci_low"] < row["ci_high"] < row["ci_high_adjusted"]
    page = report.html.read_text()
    assert page.index("<h2>Verdicts</h2>") < page.index("How to read this") < page.index("<h2>Effects</h2>")
    assert "<span class='word supported'>supported</span>" in page
    assert "the family is the 5 claims this grid tests" in page and "99.00% CI (adjusted)" in page
    assert "unadjusted CI" in page  # the effects section's sentences never read as a second verdict
    assert report.sentences[0].startswith("GAP has fewer parameters than the FC head: supported")
    assert report.verdicts["gap_accuracy_vs_fc"] == "supported"
    assert report.verdicts["dropout_accuracy"] == NOT_TESTED
    sentence = csv.loc[csv["claim"] == "GAP matches or beats the FC head in test accuracy", "sentence"].item()
    assert sentence in report.documents["md"].read_text()
    tex = report.documents["tex"].read_text(encoding="ascii")
    assert "\\item GAP matches or beats the FC head in test accuracy: supported --- non-inferiority" in tex
    results_csv = pd.read_csv(report.tables["results"])
    assert "best_test_acc_picked_on_test" in results_csv.columns and "best_test_acc" not in results_csv.columns


def test_margins_are_no_part_of_any_variant_id(tmp_path: Path) -> None:
    from runners.spec import load_grid
    from tests.conftest import REPO

    plain = load_grid(REPO / "ablations" / "quick.yaml")
    text = (REPO / "ablations" / "quick.yaml").read_text()
    with_margins = tmp_path / "quick.yaml"
    with_margins.write_text(text + "\nmargins: {test_acc: 0.02, gap_acc: 0.005}\n")
    assert [v.id for v in load_grid(with_margins).variants] == [v.id for v in plain.variants]


def test_report_margin_flag_overrides_and_bad_ones_are_one_line_exit_2(tmp_path: Path, capsys) -> None:
    from runners.cli import main

    close = {0: 0.001, 1: -0.002, 2: 0.0, 3: 0.002}
    grid = write_grid(tmp_path, "m", paired_runs(0.80, close))
    assert main(["report", str(grid), "--margin", "test_acc=0.001", "--wandb", "disabled"]) == 0
    row = pd.read_csv(grid / "report" / "verdicts.csv").set_index("claim").loc[
        "GAP matches or beats the FC head in test accuracy"]  # fmt: skip
    assert (row["verdict"], row["margin"]) == ("inconclusive", 0.001)
    capsys.readouterr()
    for flag, said in (("test_acc", "METRIC=VALUE"), ("test_acc=big", "not a number"),
                        ("loss=0.1", "unknown margin metric"), ("test_acc=1.5", "between 0 and 1")):  # fmt: skip
        assert main(["report", str(grid), "--margin", flag, "--wandb", "disabled"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and said in lines[0], lines


def test_a_claim_whose_settings_shrank_says_so_and_a_report_margin_is_marked_as_chosen_after_the_runs(
    tmp_path: Path,
) -> None:
    runs = []
    for cccp in (0, 2):
        runs += paired_runs(0.80, {0: 0.02, 1: 0.03, 2: 0.025}, cccp=cccp)
    grid = write_grid(tmp_path, "s", runs)
    for run in runs:  # every FC run at cccp 0 crashed (not the method's doing): that setting is missing
        if run["head"] == "fc" and run["cccp"] == 0:
            run.update(status="failed", error="OOM", test_acc=None, train_acc=None, gap_acc=None)
            (grid / "runs" / run["variant_id"] / "result.json").write_text(json.dumps(run))
    row = _said(load_results(grid), {"test_acc": 0.02}).loc["gap_accuracy_vs_fc"]
    assert (row["settings"], row["planned_settings"], row["n_seeds"]) == (1, 2, 3)
    assert "averages over 1 of the 2 settings the grid launched" in row["sentence"]
    assert bool(row["margin_chosen_after"]) and "margin 2 points (chosen after the runs: --margin)" in row["sentence"]
    other = _said(load_results(grid)).loc["gap_overfitting_vs_fc"]
    assert not bool(other["margin_chosen_after"]) and "chosen after" not in other["sentence"]


def test_training_time_reads_the_stopping_rules_record_where_result_json_has_one(tmp_path: Path) -> None:
    # GAP stops by the criterion after 6 epochs in 60 s; FC after 8 in 100 s, except seed 2's, capped at 10 epochs.
    runs = paired_runs(0.90, {0: 0.0, 1: 0.0, 2: 0.0})
    for run in runs:
        gap = run["head"] == "gap"
        capped = not gap and run["seed"] == 2
        run.update(stop_reason="cap" if capped else "criterion", epochs_done=10 if capped else (6 if gap else 8),
                   train_seconds=120.0 if capped else (60.0 if gap else 100.0))  # fmt: skip
    results = load_results(write_grid(tmp_path, "time", runs))
    by_run = results.runs.set_index(["head", "seed"])
    assert by_run.loc[("gap", 0), "epochs_to_fit"] == 6 and by_run.loc[("fc", 2), "epochs_to_fit"] == 10
    assert by_run.loc[("fc", 2), "training"] == "underfit" and by_run.loc[("fc", 0), "training"] == "fit"
    frame = _said(results)
    epochs = frame.loc["gap_epochs_to_fit_vs_fc"]
    assert epochs["mean"] == pytest.approx(np.mean([-2, -2, -4]))
    seconds = frame.loc["gap_seconds_to_fit_vs_fc"]
    assert seconds["mean"] == pytest.approx(np.mean([math.log(0.6), math.log(0.6), math.log(0.5)]))
    assert epochs["rule"] == "superiority" and epochs["margin"] == 1.0 and "margin 1 epoch" in epochs["sentence"]
    trains = frame.loc["gap_trains_as_often_as_fc"]
    assert trains["verdict"] == "inconclusive" and "GAP fit in 3 of 3 runs, the FC head in 2 of 3" in trains["sentence"]
    assert trains["sentence"].endswith("p = 1; the unit is the pair of runs at one setting and seed.")
    assert "exact paired test (McNemar) at 0.0" in trains["sentence"]
    # The page's table: the counts alone; its Rule column names the test and How to read this gives its unit.
    assert (trains["detail"], trains["note"]) == (
        "GAP fit in 3 of 3 runs, the FC head in 2 of 3; discordant pairs 1 (GAP alone fit) and 0 (FC alone), p = 1", "")
    # A plain epoch budget (stop_reason "epochs") is no record of the criterion: the training accuracy decides.
    for run in runs:
        run["stop_reason"] = "epochs"
    plain = load_results(write_grid(tmp_path, "budget", runs)).runs
    assert (plain["training"] == "fit").all() and (plain["epochs_to_fit"] == 3).all()  # 0.95 at the last epoch


def test_a_run_its_rule_stopped_on_a_plateau_below_a_fit_is_underfit(tmp_path: Path) -> None:
    """The stopping rule ends a crawl that levels off ("criterion") as it ends a fit; only the training accuracy
    tells them apart. The demo's GAP cccp-2 seed that levelled off at 0.51 is such a run."""
    runs = paired_runs(0.90, {0: 0.0, 1: 0.0, 2: 0.0})
    for run in runs:
        crawled = run["head"] == "gap" and run["seed"] == 1
        run.update(stop_reason="criterion", epochs_done=43 if crawled else 20, train_seconds=40.0)
        if crawled:
            run.update(train_acc=FIT_ACCURACY - 0.29, test_acc=0.50, gap_acc=FIT_ACCURACY - 0.29 - 0.50)
    results = load_results(write_grid(tmp_path, "plateau", runs))
    training = results.runs.set_index(["head", "seed"])["training"]
    assert training[("gap", 1)] == "underfit"
    assert (training.drop(("gap", 1)) == "fit").all()
    trains = _said(results).loc["gap_trains_as_often_as_fc"]
    assert "GAP fit in 2 of 3 runs, the FC head in 3 of 3" in trains["sentence"]
