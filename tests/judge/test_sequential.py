"""The sequential rule of `run --until-resolved` (judge.sequential): its boundaries against published constants, the
stopping loop's bookkeeping with a scripted host, and the report of a grown grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from judge import sequential as seq
from judge import verdicts as v
from tests import verdict_simulation as sim

# Jennison & Turnbull (2000), Tables 2.1 and 2.3: two-sided α = 0.05, K equal groups, the z-scale constants of
# Pocock's test C_P(K, α) and of O'Brien & Fleming's test C_B(K, α).
POCOCK_Z = {2: 2.178, 3: 2.289, 4: 2.361, 5: 2.413}
OBRIEN_FLEMING_Z = {2: 1.977, 3: 2.004, 4: 2.024, 5: 2.040}


@pytest.mark.parametrize("looks", sorted(POCOCK_Z))
def test_boundaries_match_the_published_z_constants_when_each_look_adds_very_many_values(looks: int) -> None:
    # A million values per group: the t statistics are z statistics, and the constants are the textbook's.
    schedule = tuple(10**6 * (j + 1) for j in range(looks))
    pocock = seq.nominal_levels(schedule, 0.05, seq.POCOCK, 200_000)
    assert len(set(pocock)) == 1  # one nominal level at every look
    assert sps.norm.isf((1 - pocock[0]) / 2) == pytest.approx(POCOCK_Z[looks], abs=0.01)
    obf = seq.nominal_levels(schedule, 0.05, seq.OBRIEN_FLEMING, 200_000)
    assert list(obf) == sorted(obf, reverse=True)  # stricter (a higher confidence) early
    assert sps.norm.isf((1 - obf[-1]) / 2) == pytest.approx(OBRIEN_FLEMING_Z[looks], abs=0.01)


def test_one_look_is_the_fixed_rule_and_more_looks_cost_a_stricter_level() -> None:
    k = 7
    fixed = v.family_confidence(k)
    assert seq.plan([f"c{i}" for i in range(k)], 5, 1, 5).confidences == (pytest.approx(fixed),)
    family = [f"c{i}" for i in range(k)]
    bonferroni = 1 - 0.05 / k / 8  # every one of the 8 looks at α/(k × 8)
    pocock = seq.plan(family, 5, 1, 12, seq.POCOCK)
    assert pocock.schedule == tuple(range(5, 13))
    assert fixed < pocock.confidences[0] < bonferroni  # correlated looks: dearer than one, cheaper than a union bound
    design = seq.plan(family, 5, 1, 12)  # the runner's: O'Brien & Fleming's shape
    assert design.shape == seq.OBRIEN_FLEMING and list(design.confidences) == sorted(design.confidences, reverse=True)
    assert design.confidences[0] > bonferroni and fixed < design.confidences[-1] < pocock.confidences[-1]
    # Deterministic: the same draws on every machine, so a rerun's design is the recorded one.
    seq.nominal_levels.cache_clear()
    assert seq.plan(family, 5, 1, 12).confidences == design.confidences


def test_the_nominal_level_holds_the_error_of_repeated_t_intervals_on_fresh_normal_draws() -> None:
    # Independent of the boundary's own draws: 20,000 sequences of 5..12 values, any look's interval missing the mean.
    for shape in (seq.POCOCK, seq.OBRIEN_FLEMING):
        assert_error_held(seq.plan(["a"], 5, 1, 12, shape))


def assert_error_held(design: seq.Design) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(3.0, 2.0, (20_000, 12))
    missed = np.zeros(len(x), dtype=bool)
    for n, level in zip(design.schedule, design.confidences):
        mean, sd = x[:, :n].mean(axis=1), x[:, :n].std(axis=1, ddof=1)
        half = sps.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
        missed |= np.abs(mean - 3.0) > half
    assert abs(missed.mean() - 0.05) <= 2 * math.sqrt(0.05 * 0.95 / len(x))


def test_schedule_and_new_seed_numbers() -> None:
    assert seq.schedule(5, 2, 10) == (5, 7, 9, 10)  # the last look at --max-seeds
    assert seq.schedule(3, 1, 3) == (3,)
    assert seq.next_seeds([0, 1, 2], reserved=(3, 4), count=2) == [5, 6]  # after the highest, tuning seeds skipped
    assert seq.next_seeds([7, 2], reserved=(), count=1) == [8]
    design = seq.plan(["a"], 2, 1, 4)
    assert math.isnan(design.confidences[0])  # 2 seeds: no interval, so no error to spend there


def test_a_sequence_whose_looks_all_have_too_few_seeds_for_an_interval_is_described() -> None:
    design = seq.plan(["a"], 1, 1, 2)  # a 1-seed grid with --max-seeds 2: looks at 1 and 2 seeds
    assert design.schedule == (1, 2) and all(math.isnan(c) for c in design.confidences)
    text = seq.family_text({"design": design.as_record(), "looks": []})
    assert "judged on no interval (every look has fewer than 3 seeds" in text
    assert "judged on a 95.00% t interval" in seq.family_text({"design": seq.plan(["a"], 3, 1, 3).as_record(),
                                                                "looks": []})  # fmt: skip


class ScriptedHost:
    """Verdicts chosen per (claim, look); the groups of a claim are named after it."""

    def __init__(self, script: dict[str, list[str]]) -> None:
        self.script, self.asked, self.recorded = script, [], []

    def ready(self, seeds, looks) -> bool:
        return True

    def judge(self, seeds, confidence, keys):
        self.asked.append(list(keys))
        look = len(self.recorded)
        return {key: {"verdict": self.script[key][look], "qualifier": "", "mean": 0.0, "ci_low": -1.0,
                      "ci_high": 1.0, "n_seeds": len(seeds)} for key in keys}  # fmt: skip

    def groups(self, keys):
        return sorted(f"{key}-{side}" for key in keys for side in ("a", "b"))

    def record(self, look) -> None:
        self.recorded.append(look)


def test_a_closed_claim_stays_frozen_and_only_open_claims_get_seeds() -> None:
    design = seq.plan(["early", "late", "never"], 3, 1, 6)
    host = ScriptedHost({
        "early": [v.SUPPORTED, v.INCONCLUSIVE, v.CONTRADICTED, v.INCONCLUSIVE],  # closes at look 1
        "late": [v.INCONCLUSIVE, v.INCONCLUSIVE, v.EQUIVALENT, v.SUPPORTED],  # closes at look 3
        "never": [v.INCONCLUSIVE] * 4,
    })  # fmt: skip
    looks = seq.follow(design, [], [0, 1, 2], 6, host)
    assert [look["n_seeds"] for look in looks] == [3, 4, 5, 6] and looks == host.recorded
    assert host.asked == [["early", "late", "never"], ["late", "never"], ["late", "never"], ["never"]]
    last = looks[-1]["claims"]
    assert (last["early"]["verdict"], last["early"]["closed_at"], last["early"]["closed_at_seeds"]) == (
        v.SUPPORTED, 1, 3)  # fmt: skip
    assert (last["late"]["verdict"], last["late"]["closed_at"]) == (v.EQUIVALENT, 3)
    assert last["never"]["closed_at"] is None and looks[-1]["open"] == ["never"]
    assert looks[0]["added_groups"] == ["late-a", "late-b", "never-a", "never-b"]
    assert looks[2]["added_groups"] == ["never-a", "never-b"] and looks[2]["added_seeds"] == [5]
    assert looks[-1]["decision"] == seq.STOP and "--max-seeds 6" in looks[-1]["reason"]
    assert seq.runs_of(6, looks) == 6 + 4 + 4 + 2


def test_the_loop_resumes_from_its_record_and_stops_for_the_reasons_it_names() -> None:
    design = seq.plan(["a", "b"], 3, 2, 9)
    script = {"a": [v.INCONCLUSIVE, v.SUPPORTED, v.SUPPORTED], "b": [v.INCONCLUSIVE, v.INCONCLUSIVE, v.SUPPORTED]}
    whole = seq.follow(design, [], [0, 1, 2], 6, ScriptedHost(script))
    assert [look["n_seeds"] for look in whole] == [3, 5, 7] and whole[-1]["reason"].startswith("every claim resolved")
    assert whole[0]["added_seeds"] == [3, 4]
    # Resumed after look 1: the record's decision is followed, look 1 is not taken again.
    resumed_host = ScriptedHost(script)
    resumed_host.recorded = whole[:1]
    resumed = seq.follow(design, whole[:1], [0, 1, 2], 6, resumed_host)
    assert resumed == whole and len(resumed_host.asked) == 2
    # The run ceiling: the next round would need 2 seeds × 4 groups.
    capped = seq.follow(design, [], [0, 1, 2], 6, ScriptedHost(script), ceiling=13)
    assert len(capped) == 1 and "13-run ceiling" in capped[0]["reason"] and capped[0]["decision"] == seq.STOP
    # A host whose runs are not all finished (a worker died): the loop returns with the last look still adding.
    class Stalled(ScriptedHost):
        def ready(self, seeds, looks) -> bool:
            return len(looks) < 1

    partial = seq.follow(design, [], [0, 1, 2], 6, Stalled(script))
    assert len(partial) == 1 and partial[-1]["decision"] == seq.ADD


def record_for(design: seq.Design, looks_seeds: list[list[int]]) -> dict:
    looks = [{"look": i + 1, "seeds": s, "n_seeds": len(s), "decision": seq.ADD, "open": [], "reason": "",
              "added_seeds": [], "added_groups": []} for i, s in enumerate(looks_seeds)]  # fmt: skip
    looks[-1]["decision"] = seq.STOP
    return {"design": design.as_record(), "looks": looks}


def test_the_report_of_a_grown_grid_freezes_each_claim_at_the_look_that_closed_it() -> None:
    # cccp costing 20 points, so that 3 seeds resolve it at the look's strict level; the other claims, with no effect,
    # close wherever their intervals happen to.
    scenario = sim.Scenario(seeds=6, effects={("cccp", 2, "test_acc"): -0.2})
    results = sim.result_set(scenario, np.random.default_rng(3))
    family = [c.key for c in v.testable_claims(results)]
    design = seq.plan(family, 3, 1, 6, seq.POCOCK)  # the report follows the recorded design, whatever its shape
    results.sequence = record_for(design, [[0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]])
    frame = seq.report_verdicts(results).set_index("key")
    looks = [seq.judge_look(results, s, design, i) for i, s in enumerate(look["seeds"] for look in
                                                                              results.sequence["looks"])]  # fmt: skip
    cccp = "cccp_2_vs_0_accuracy"
    assert looks[0].loc[cccp, "verdict"] == v.CONTRADICTED
    assert frame.loc[cccp, "verdict"] == v.CONTRADICTED and frame.loc[cccp, "resolved_at_seeds"] == 3
    # Frozen: the last look saw 6 seeds of it (open claims share its variants), the verdict reads the closing look's 3.
    assert looks[-1].loc[cccp, "n_seeds"] == 6 and frame.loc[cccp, "n_seeds"] == 3
    assert frame.loc[cccp, "ci_low_adjusted"] == looks[0].loc[cccp, "ci_low_adjusted"]
    assert frame.loc[cccp, "confidence_adjusted"] == pytest.approx(design.confidences[0])
    assert "sequential: resolved at 3 seeds (look 1 of 4)" in frame.loc[cccp, "sentence"]
    for key in family:  # every other claim: its first closing look, or the last look and "open at 6 seeds"
        closing = next((i for i, f in enumerate(looks) if f.loc[key, "verdict"] in seq.CLOSING), None)
        if closing is None:
            assert frame.loc[key, "verdict"] == looks[-1].loc[key, "verdict"] == v.INCONCLUSIVE
            assert pd_na(frame.loc[key, "resolved_at_seeds"]) and "open at 6 seeds" in frame.loc[key, "sequence"]
        else:
            assert frame.loc[key, "verdict"] == looks[closing].loc[key, "verdict"]
            assert frame.loc[key, "resolved_at_seeds"] == 3 + closing
    # Not a family claim: the parameter claims read the last look (no parameter counts in this structure).
    assert frame.loc["gap_params_vs_fc", "sequence"] == ""
    # A plain grid keeps the fixed rule.
    results.sequence = None
    fixed = seq.report_verdicts(results).set_index("key")
    assert fixed.loc[cccp, "n_seeds"] == 6 and fixed["resolved_at_seeds"].isna().all()
    assert fixed.loc[cccp, "confidence_adjusted"] == pytest.approx(v.family_confidence(len(family)))


def pd_na(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))
