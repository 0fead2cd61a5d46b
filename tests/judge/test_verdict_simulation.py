"""The verdict rule proved by simulation with known truth in the quick grid's real structure (tests.verdict_simulation).

Each pass rule is "the estimate is within its target ± 2 Monte-Carlo SE", the SE taken at the target. Seeded, so the
suite gives the same figures on every machine; docs/DECISIONS.md quotes the same scenarios at more repetitions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from judge import verdicts as v
from tests import verdict_simulation as sim

DELTA = v.DEFAULT_MARGINS["test_acc"]
FAMILY = len(sim.DIFFERENCE_CLAIMS)
NI_CLAIMS = ("gap_accuracy_vs_fc", "gap_accuracy_vs_alexnet")


def at_most(share: float, target: float, reps: int) -> bool:
    return share <= target + 2 * sim.mc_se(target, reps)


def at_least(share: float, target: float, reps: int) -> bool:
    return share >= target - 2 * sim.mc_se(target, reps)


def test_the_grid_structure_gives_the_report_its_family_of_seven_claims():
    frame = sim.reports(sim.Scenario(), 1, 0)[0]
    tested = frame[frame["family_size"].notna()]
    assert sorted(tested.index) == sorted(sim.DIFFERENCE_CLAIMS)
    assert (tested["family_size"] == FAMILY).all()
    assert tested["confidence_adjusted"].iloc[0] == pytest.approx(1 - 0.05 / FAMILY)
    assert (tested["n_seeds"] == 5).all() and tested.loc["gap_accuracy_vs_fc", "n_pairs"] == 20


def test_null_no_effect_anywhere_false_verdicts_in_at_most_5_percent_of_reports_and_intervals_cover():
    reps, scenario = 200, sim.Scenario()
    frames = sim.reports(scenario, reps, seed=101)
    truth = sim.truths(scenario)
    assert set(truth.values()) == {0.0}
    wrong = pd.DataFrame([sim.false_verdicts(f, truth) for f in frames])
    assert at_most(wrong.any(axis=1).mean(), 0.05, reps), wrong.mean()
    superiority = [k for k in sim.DIFFERENCE_CLAIMS if k not in NI_CLAIMS]
    directional = np.mean([f.loc[superiority, "verdict"].isin([v.SUPPORTED, v.CONTRADICTED]).any() for f in frames])
    assert at_most(directional, 0.05, reps)
    cover = pd.DataFrame([sim.covered(f, truth) for f in frames])
    assert at_least(cover.all(axis=1).mean(), 0.95, reps)
    assert at_least(cover.to_numpy().mean(), v.family_confidence(FAMILY), reps * FAMILY)


def test_boundaries_an_effect_of_minus_delta_is_not_matched_and_delta_is_not_equivalent():
    reps = 160
    scenario = sim.boundaries(DELTA)
    truth = sim.truths(scenario)
    assert [truth[k] for k in (*NI_CLAIMS, "cccp_2_vs_0_accuracy", "dropout_accuracy")] == pytest.approx(
        [-DELTA, -DELTA, DELTA, -DELTA])  # fmt: skip
    frames = sim.reports(scenario, reps, seed=202)
    for key in NI_CLAIMS:
        supported = np.mean([f.loc[key, "verdict"] == v.SUPPORTED for f in frames])
        assert at_most(supported, 0.05, reps), (key, supported)
    for key in ("cccp_2_vs_0_accuracy", "dropout_accuracy", *NI_CLAIMS):
        equivalent = np.mean([v.EQUIVALENT in (f.loc[key, "verdict"], f.loc[key, "qualifier"]) for f in frames])
        assert at_most(equivalent, 0.05, reps), (key, equivalent)


def test_power_and_equal_heads_at_five_seeds():
    reps = 120
    scenario = sim.quiet(cccp_effect_sds=2.0)
    assert sim.seed_level_sd(scenario, "gap_accuracy_vs_fc") == pytest.approx(DELTA / 4)
    frames = sim.reports(scenario, reps, seed=303)
    # Power: an effect of 2 seed-level sds is found at least as often as the noncentral t says at the adjusted level.
    power = sim.noncentral_power(2.0, 5, v.family_confidence(FAMILY))
    found = np.mean([f.loc["cccp_2_vs_0_accuracy", "verdict"] == v.SUPPORTED for f in frames])
    assert at_least(found, power, reps), (found, power)
    # Equal heads, seed-level sd δ/4: "matches or beats" resolves (supported, equivalent or both) in ≥ 80%.
    for key in NI_CLAIMS:
        resolved = np.mean([f.loc[key, "verdict"] == v.SUPPORTED for f in frames])
        assert at_least(resolved, 0.80, reps), (key, resolved)
    # and nothing in the report is wrong more often than the budget allows
    truth = sim.truths(scenario)
    wrong = pd.DataFrame([sim.false_verdicts(f, truth) for f in frames])
    assert at_most(wrong.any(axis=1).mean(), 0.05, reps)


def test_coverage_at_three_seeds():
    reps, scenario = 200, sim.Scenario(seeds=3)
    frames = sim.reports(scenario, reps, seed=404)
    truth = sim.truths(scenario)
    cover = pd.DataFrame([sim.covered(f, truth) for f in frames])
    assert (pd.concat([f["n_seeds"] for f in frames]).dropna() <= 3).all()
    assert at_least(cover.all(axis=1).mean(), 0.95, reps)
    assert at_least(cover.to_numpy().mean(), v.family_confidence(FAMILY), reps * FAMILY)


def test_bimodal_seeds_are_named_and_their_coverage_is_measured(capsys):
    # A fifth of the seeds fall on a second branch (GAP cccp 2 loses 30 points). The t interval over such a split
    # sample undercovers (docs/DECISIONS.md quotes the figure): the named caveat is what keeps the reader honest.
    reps, scenario = 100, sim.Scenario(bimodal=0.2)
    rng = np.random.default_rng(505)
    truth = sim.truths(scenario)
    covers, named = [], []
    for _ in range(reps):
        results = sim.result_set(scenario, rng)
        frame = v.verdicts(results).set_index("key")
        covers.append(sim.covered(frame, truth))
        second_branch = bool(results.runs["underfit"].any())
        flagged = frame.loc["gap_accuracy_vs_fc", "runs_flagged"]
        named.append(second_branch == (flagged > 0))
        if second_branch:
            assert "under-fitted run" in frame.loc["gap_accuracy_vs_fc", "sentence"]
            assert frame.loc["gap_accuracy_vs_fc", "verdict_without_flagged"] in (
                v.SUPPORTED, v.CONTRADICTED, v.EQUIVALENT, v.INCONCLUSIVE)  # fmt: skip
    assert all(named)
    cover = pd.DataFrame(covers)
    with capsys.disabled():
        print(f"\nbimodal seeds (share 0.2), 5 seeds: simultaneous coverage {cover.all(axis=1).mean():.2f}, "
              f"per claim {cover.to_numpy().mean():.3f} (nominal {v.family_confidence(FAMILY):.3f})")  # fmt: skip
