"""The verdict rule proved by simulation with known truth in the quick grid's real structure (tests.verdict_simulation).

Each pass rule is "the estimate is within its target ± 2 Monte-Carlo SE", the SE taken at the target. Seeded, so the
suite gives the same figures on every machine; docs/DECISIONS.md quotes the same scenarios at more repetitions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from judge import verdicts as v
from reports import words
from tests import verdict_simulation as sim

DELTA = v.DEFAULT_MARGINS["test_acc"]
FAMILY = len(sim.family())  # the seven difference claims and the two trainability claims
NI_CLAIMS = ("gap_accuracy_vs_fc", "gap_accuracy_vs_alexnet")


def at_most(share: float, target: float, reps: int) -> bool:
    return share <= target + 2 * sim.mc_se(target, reps)


def at_least(share: float, target: float, reps: int) -> bool:
    return share >= target - 2 * sim.mc_se(target, reps)


def test_the_grid_structure_gives_the_report_its_family_of_nine_claims():
    frame = sim.reports(sim.Scenario(), 1, 0)[0]
    tested = frame[frame["family_size"].notna()]
    assert sorted(tested.index) == sorted((*sim.DIFFERENCE_CLAIMS, *sim.TRAINABILITY_CLAIMS)) == sorted(sim.family())
    assert FAMILY == 9  # the training-time claims need epochs, which a simulated result has not: untested here
    assert (tested["family_size"] == FAMILY).all()
    assert tested["confidence_adjusted"].iloc[0] == pytest.approx(1 - 0.05 / FAMILY)
    assert (tested["n_seeds"] == 5).all() and tested.loc["gap_accuracy_vs_fc", "n_pairs"] == 20


def test_null_no_effect_anywhere_false_verdicts_in_at_most_5_percent_of_reports_and_intervals_cover():
    reps, scenario = 1000, sim.Scenario()
    frames = sim.fast_reports(scenario, reps, seed=101)
    truth = sim.truths(scenario)
    assert set(truth.values()) == {0.0}
    wrong = pd.DataFrame([sim.false_verdicts(f, truth) for f in frames])
    assert at_most(wrong.any(axis=1).mean(), 0.05, reps), wrong.mean()
    superiority = [k for k in sim.DIFFERENCE_CLAIMS if k not in NI_CLAIMS]
    directional = np.mean([f.loc[superiority, "verdict"].isin([v.SUPPORTED, v.CONTRADICTED]).any() for f in frames])
    assert at_most(directional, 0.05, reps)
    cover = pd.DataFrame([sim.covered(f, truth) for f in frames])
    assert at_least(cover.all(axis=1).mean(), 0.95, reps)
    assert at_least(cover.to_numpy().mean(), v.family_confidence(FAMILY), reps * len(sim.DIFFERENCE_CLAIMS))


def test_power_and_equal_heads_at_five_seeds():
    reps = 1000
    scenario = sim.quiet(cccp_effect_sds=2.0)
    assert sim.seed_level_sd(scenario, "gap_accuracy_vs_fc") == pytest.approx(DELTA / 4)
    frames = sim.fast_reports(scenario, reps, seed=303)
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
    reps, scenario = 1000, sim.Scenario(seeds=3)
    frames = sim.fast_reports(scenario, reps, seed=404)
    truth = sim.truths(scenario)
    cover = pd.DataFrame([sim.covered(f, truth) for f in frames])
    assert (pd.concat([f["n_seeds"] for f in frames]).dropna() <= 3).all()
    assert at_least(cover.all(axis=1).mean(), 0.95, reps)
    assert at_least(cover.to_numpy().mean(), v.family_confidence(FAMILY), reps * len(sim.DIFFERENCE_CLAIMS))


def test_bimodal_seeds_are_named_and_their_coverage_is_measured(capsys):
    # A fifth of the seeds fall on a second branch (GAP cccp 2 loses 30 points, below the training criterion). The t
    # interval over such a split sample undercovers (docs/DECISIONS.md quotes the figure): the runs are named as
    # failed training on every claim whose pairs hold them, and the page says the guarantee is weakened.
    reps, scenario = 100, sim.Scenario(bimodal=0.2)
    rng = np.random.default_rng(505)
    truth = sim.truths(scenario)
    covers, named = [], []
    for _ in range(reps):
        results = sim.result_set(scenario, rng)
        frame = words.table(v.verdicts(results)).set_index("key")
        covers.append(sim.covered(frame, truth))
        second_branch = bool(results.runs["underfit"].any())
        flagged = frame.loc["gap_accuracy_vs_fc", "runs_flagged"]
        named.append(second_branch == (flagged > 0))
        assert bool(words.weakened_text(results)) == second_branch
        if second_branch:
            assert "whose training failed judged with" in frame.loc["gap_accuracy_vs_fc", "sentence"]
    assert all(named)
    cover = pd.DataFrame(covers)
    with capsys.disabled():
        print(f"\nbimodal seeds (share 0.2), 5 seeds: simultaneous coverage {cover.all(axis=1).mean():.2f}, "
              f"per claim {cover.to_numpy().mean():.3f} (nominal {v.family_confidence(FAMILY):.3f})")  # fmt: skip


# ---- the rule at α/k, and failed training as an outcome (issue 27): the fast path, ≥ 1,000 reports per check ----
ALPHA_K = v.FAMILY_ERROR / FAMILY
NI_WORDS = (v.SUPPORTED, v.EQUIVALENT)


def boundary_checks(judged: list[dict], truth: dict[str, float], reps: int) -> dict[str, bool]:
    """Each boundary check passes (True) when its rate is within α/k (per claim) or 5% (the family) + 2 MC SE."""
    out = {}
    for key in NI_CLAIMS:  # at −δ exactly: "matches or beats" is false
        rate = np.mean([j[key]["verdict"] == v.SUPPORTED for j in judged])
        out[f"{key} supported"] = at_most(rate, ALPHA_K, reps)
    for key in ("cccp_2_vs_0_accuracy", "dropout_accuracy", *NI_CLAIMS):  # at |δ| exactly: "equivalent" is false
        rate = np.mean([v.EQUIVALENT in (j[key]["verdict"], j[key]["qualifier"]) for j in judged])
        out[f"{key} equivalent"] = at_most(rate, ALPHA_K, reps)
    wrong = np.mean([any(sim.false_verdict(sim.claim_row(k, j[k]), truth[k]) for k in sim.family()) for j in judged])
    out["family"] = at_most(wrong, 0.05, reps)
    return out


def test_at_the_boundaries_each_claim_errs_at_most_alpha_over_k_and_the_family_at_most_5_percent():
    # A correct rule errs about α/(2k) ≈ 0.003 per claim at its boundary; a rule read from the unadjusted 95% interval
    # (0.025) or a 90% TOST interval (0.05) would fail: both are run below as negative controls.
    reps = 4000
    scenario = sim.boundaries(DELTA)
    grids = sim.hosts(scenario, scenario.seeds, reps, np.random.default_rng(2701))
    truth = sim.truths(scenario)
    checks = boundary_checks(sim.fixed_rule(grids), truth, reps)
    assert all(checks.values()), checks
    for loosened in (0.95, 0.90):  # negative controls: each fails a per-claim check
        checks = boundary_checks(sim.fixed_rule(grids, loosened), truth, reps)
        assert not all(checks.values()), (loosened, checks)


def failed_training_scenario(kind: str) -> sim.Scenario:
    """A quarter of GAP's cccp-2 runs stall, or under-fit (the quick grid's 5 seeds)."""
    return sim.Scenario(**{kind: 0.25})


def matches_stated(judged: list[dict]) -> float:
    """The share of reports that state "matches or beats" supported or equivalent on either other head."""
    return float(np.mean([any(j[k]["verdict"] in NI_WORDS or j[k]["qualifier"] == v.EQUIVALENT for k in NI_CLAIMS)
                          for j in judged]))  # fmt: skip


@pytest.mark.parametrize("kind", ["stall", "underfit"])
def test_when_a_quarter_of_gaps_runs_fail_to_train_matches_or_beats_is_not_stated(kind: str):
    reps = 1000
    scenario = failed_training_scenario(kind)
    truth = sim.truths(scenario)
    assert truth["gap_accuracy_vs_fc"] < -2 * DELTA  # over the runs launched GAP is worse by more than the margin
    grids = sim.hosts(scenario, scenario.seeds, reps, np.random.default_rng(2702 if kind == "stall" else 2703))
    judged = sim.fixed_rule(grids)
    assert at_most(matches_stated(judged), 0.05, reps), matches_stated(judged)
    wrong = np.mean([any(sim.false_verdict(sim.claim_row(k, j[k]), truth[k]) for k in sim.family()) for j in judged])
    assert at_most(wrong, 0.05, reps), wrong
    # Negative control: the per-protocol rule (the runs that failed to train left out, as the report did before
    # and as its sensitivity analysis still does) states "matches" far too often on the same grids.
    per_protocol = sim.fixed_rule([sim.SimHost(g.outcomes, leave_failed=True) for g in grids])
    assert not at_most(matches_stated(per_protocol), 0.05, reps), matches_stated(per_protocol)


def test_the_fast_path_judges_failed_training_as_the_report_and_its_sensitivity_analysis_do():
    for kind in ("stall", "underfit"):
        scenario = failed_training_scenario(kind)
        for host in sim.hosts(scenario, scenario.seeds, 4, np.random.default_rng(2704)):
            results = sim.framed(scenario.seeds, host.outcomes)
            assert (results.runs["fit"].to_numpy() == sim.fit_flags(host.outcomes)[0]).all()
            frame = v.table(v.verdicts(results)).set_index("key")
            fast = sim.fixed_rule([host])[0]
            for key in sim.family():
                assert frame.loc[key, "verdict"] == fast[key]["verdict"], (kind, key)
                assert frame.loc[key, "mean"] == pytest.approx(fast[key]["mean"], abs=1e-12), (kind, key)
            sensitivity = v.sensitivity(results).set_index("key")
            assert "verdict" not in sensitivity.columns  # numbers only: no verdict words
            without = sim.fixed_rule([sim.SimHost(host.outcomes, leave_failed=True)])[0]
            for key in sensitivity.index:
                if without[key]["mean"] is not None:
                    assert sensitivity.loc[key, "mean"] == pytest.approx(without[key]["mean"], abs=1e-12), key


def test_the_trainability_claim_finds_a_large_difference_and_is_silent_without_one():
    reps = 1000
    scenario = sim.Scenario(stall=0.9)  # GAP at cccp 2 stalls in 9 runs of 10: GAP fits in 55% of runs, FC in 100%
    grids = sim.hosts(scenario, scenario.seeds, reps, np.random.default_rng(2705))
    judged = sim.fixed_rule(grids)
    # The exact power: x discordant pairs (all GAP's failures, each GAP cccp-2 run stalling with p 0.9) reject when
    # 2 · 0.5^x < α/k.
    runs = 2 * scenario.seeds
    power = sum(sps.binom.pmf(x, runs, scenario.stall) for x in range(runs + 1) if 2 * 0.5**x < ALPHA_K)
    assert power > 0.7
    for key in sim.TRAINABILITY_CLAIMS:
        found = np.mean([j[key]["verdict"] == v.CONTRADICTED and j[key]["mean"] < 0 for j in judged])
        assert at_least(found, power, reps), (key, found, power)
        # Negative control: judged on the runs that trained (failed ones left out), it can never see the difference.
        blind = sim.fixed_rule([sim.SimHost(g.outcomes, leave_failed=True) for g in grids[:200]])
        assert np.mean([j[key]["verdict"] == v.CONTRADICTED for j in blind]) < 0.8
    null = sim.fixed_rule(sim.hosts(sim.Scenario(), 5, reps, np.random.default_rng(2706)))
    for key in sim.TRAINABILITY_CLAIMS:  # every run fits: never contradicted
        assert not any(j[key]["verdict"] == v.CONTRADICTED for j in null)
