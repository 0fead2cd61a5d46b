"""The sequential rule of `run --until-resolved` proved by simulating its whole loop (tests.verdict_simulation).

Every sequence runs through judge.sequential.follow, the loop the runner runs, with a SimHost in place of trained
runs; SimHost judges exactly as judge.sequential.judge_look does (the first test checks it). Each pass rule is "the
estimate is within its target ± 2 Monte-Carlo SE", the SE taken at the target. Seeded: the same figures everywhere.
docs/DECISIONS.md ("Seeds on demand: the designs measured") quotes the designs at more repetitions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from judge import sequential
from judge import verdicts as v
from judge.looks import OBRIEN_FLEMING
from tests import verdict_simulation as sim
from tests.judge.test_verdict_simulation import at_least, at_most

DELTA = v.DEFAULT_MARGINS["test_acc"]
NI_CLAIMS = ("gap_accuracy_vs_fc", "gap_accuracy_vs_alexnet")
GRID_RUNS = len(sim.variants()) * sim.GRID_SEEDS  # the quick grid's 14 variants × 5 seeds: the first look's runs


def test_the_fast_host_judges_as_the_report_does():
    # One grid of 12 seeds with a second branch (under-fitted runs flagged, the verdict still on all pairs), judged
    # at looks of an O'Brien-Fleming design (a different confidence at each look) and below 3 seeds (no interval).
    plan = sim.design(shape=OBRIEN_FLEMING)
    assert len(set(plan.confidences)) == len(plan.schedule)
    host = sim.hosts(sim.Scenario(bimodal=0.3), plan.max_seeds, 1, np.random.default_rng(11))[0]
    results = sim.framed(plan.max_seeds, host.outcomes)
    assert results.runs["underfit"].any()
    keys = list(sim.family())
    compared = 0
    for look, seeds in ((0, [0, 1]), (0, list(range(5))), (3, list(range(8))), (7, list(range(12)))):
        full = sequential.judged_claims(sequential.judge_look(results, seeds, plan, look), keys)
        fast = host.judge(seeds, plan.confidence(look), keys)
        for key in keys:
            assert (fast[key].verdict, fast[key].qualifier, fast[key].n_seeds) == (
                full[key].verdict, full[key].qualifier, full[key].n_seeds), (look, key)  # fmt: skip
            for field in ("mean", "ci_low", "ci_high"):
                expected, got = getattr(full[key], field), getattr(fast[key], field)
                if expected is None:
                    assert got is None, (look, key, field)
                else:
                    assert got == pytest.approx(expected, abs=1e-12, rel=0), (look, key, field)
                    compared += 1
    # means at 2 seeds, every interval from 5 seeds on, and the trainability claims' share difference at every look
    assert compared == 7 + 3 * 7 * 3 + 4 * len(sim.TRAINABILITY_CLAIMS)
    verdicts = {full[key].verdict for key in keys}
    assert len(verdicts) > 1  # the last look judges more than one verdict: the check is not all "inconclusive"
    for keys_open in (set(keys), {"cccp_2_vs_0_accuracy"}, set(NI_CLAIMS), {"gap_overfitting_vs_alexnet"}):
        assert host.groups(frozenset(keys_open)) == sorted(v.claim_variants(results, keys_open))


def test_null_no_effect_anywhere_at_most_5_percent_of_sequences_ever_state_a_false_verdict():
    reps, scenario, plan = 2000, sim.Scenario(), sim.design()
    assert plan.schedule == tuple(range(5, 13)) and plan.family == sim.family() and len(plan.family) == 9
    looks = sim.sequences(scenario, plan, reps, seed=7101)
    truth = sim.truths(scenario)
    wrong = np.mean([sim.ever_false(s, truth) for s in looks])
    assert at_most(wrong, 0.05, reps), wrong
    assert all(s[-1].decision == sequential.STOP for s in looks)
    assert all(runs <= len(sim.variants()) * plan.max_seeds for runs in (sim.runs_trained(plan, s) for s in looks))


def test_null_from_3_to_20_seeds():
    reps, scenario, plan = 800, sim.Scenario(), sim.design(first=3, max_seeds=20)
    looks = sim.sequences(scenario, plan, reps, seed=7102)
    truth = sim.truths(scenario)
    wrong = np.mean([sim.ever_false(s, truth) for s in looks])
    assert at_most(wrong, 0.05, reps), wrong
    assert max(s[-1].n_seeds for s in looks) == 20  # some sequence used the whole schedule


def test_boundaries_minus_delta_is_not_matched_and_delta_is_not_equivalent():
    reps, scenario, plan = 1000, sim.boundaries(DELTA), sim.design()
    truth = sim.truths(scenario)
    looks = sim.sequences(scenario, plan, reps, seed=7103)
    final = [s[-1].claims for s in looks]  # a closed claim is frozen at its closing look's verdict
    for key in NI_CLAIMS:
        supported = np.mean([c[key].verdict == v.SUPPORTED for c in final])
        assert at_most(supported, 0.05, reps), (key, supported)
    for key in ("cccp_2_vs_0_accuracy", "dropout_accuracy", *NI_CLAIMS):
        equivalent = np.mean([v.EQUIVALENT in (c[key].verdict, c[key].qualifier) for c in final])
        assert at_most(equivalent, 0.05, reps), (key, equivalent)
    wrong = np.mean([sim.ever_false(s, truth) for s in looks])
    assert at_most(wrong, 0.05, reps), wrong


def test_a_large_effect_resolves_at_the_first_look_and_the_sequence_trains_less_than_without_stopping():
    reps, plan, effect = 600, sim.design(), 20.0  # O'Brien-Fleming's first look is strict: a large effect
    base = sim.Scenario()
    shift = effect * sim.seed_level_sd(base, "cccp_2_vs_0_accuracy")
    scenario = sim.Scenario(effects={("cccp", 2, "test_acc"): shift})
    looks = sim.sequences(scenario, plan, reps, seed=7104)
    cccp = [s[-1].claims["cccp_2_vs_0_accuracy"] for s in looks]
    first = plan.schedule[0]
    at_first = np.mean([c.verdict == v.SUPPORTED and c.closed_at_seeds == first for c in cccp])
    power = sim.noncentral_power(effect, first, plan.confidence(0))
    assert power > 0.9
    assert at_least(at_first, power, reps), (at_first, power)
    # Without early stopping every look would add a seed to every variant of the family's claims; the include rows
    # (ReLU GAP, AlexNet reference) are in no claim and never grow, so even that is below the fixed design's runs.
    grows = len(sim.groups_of(frozenset(plan.family)))
    never_stopping = GRID_RUNS + (plan.max_seeds - first) * grows
    assert never_stopping < len(sim.variants()) * plan.max_seeds
    runs = np.array([sim.runs_trained(plan, s) for s in looks])
    assert runs.max() <= never_stopping and runs.mean() < never_stopping, runs.mean()


def test_large_effects_on_every_claim_stop_the_whole_sequence_at_the_grid_seeds():
    # Each claim resolves at the first look at least as often as its noncentral-t power there (an effect in the
    # claimed direction: the "matches" claims even more often), so all 7 do in at least 1 − 7 × (1 − power).
    reps, plan, effect = 500, sim.design(), 24.0  # the family of 9 makes the first look stricter than 7 did
    looks = sim.sequences(sim.claimed_effects(effect), plan, reps, seed=7105)
    power = sim.noncentral_power(effect, plan.schedule[0], plan.confidence(0))
    bound = 1 - len(sim.DIFFERENCE_CLAIMS) * (1 - power)  # the trainability claims hold no sequence open
    assert bound > 0.5
    stopped = np.mean([len(s) == 1 and sim.runs_trained(plan, s) == GRID_RUNS for s in looks])
    assert at_least(stopped, bound, reps), (stopped, bound)


def test_claimed_effects_are_the_stated_seed_level_sds_in_each_claimed_direction():
    scenario = sim.claimed_effects(0.5)
    truth = sim.truths(scenario)
    for key in sim.DIFFERENCE_CLAIMS:
        c = sim.claim(key)
        assert truth[key] == pytest.approx(0.5 * c.direction * sim.seed_level_sd(scenario, key)), key


def test_bimodal_seeds_under_the_sequential_rule_are_measured(capsys):
    # A fifth of the seeds on a second branch (GAP cccp 2 at −30 points). The t interval over such a split sample is
    # not what the rule assumes; the fixed rule already states false verdicts in ~21% of 5-seed reports here
    # (docs/DECISIONS.md). Measured, not asserted: with these 400 sequences 20.3% ever state a false verdict (2000 in
    # DECISIONS, "Seeds on demand: the designs measured"). Only the loop is asserted to run to its end.
    reps, scenario, plan = 400, sim.Scenario(bimodal=0.2), sim.design()
    looks = sim.sequences(scenario, plan, reps, seed=7106)
    truth = sim.truths(scenario)
    assert all(s[-1].decision == sequential.STOP for s in looks)
    wrong = float(np.mean([sim.ever_false(s, truth) for s in looks]))
    assert math.isfinite(wrong)
    with capsys.disabled():
        print(f"\nbimodal seeds (share 0.2), sequential 5 → 12: sequences with any false verdict {wrong:.3f} "
              f"(MC SE {sim.mc_se(wrong, reps):.3f}; budget 0.05)")  # fmt: skip
