"""Synthetic result sets with known truth in the quick grid's real structure, judged by the report's own rule.

Structure (ablations/quick.yaml): head {gap, fc, alexnet} × cccp {0, 2} × dropout {on, off} on NiN, plus its two
include rows (the seeds' exact ReLU-before-GAP head at cccp 2 with dropout, and d2l's AlexNet reference), × seeds.

Noise model (docs/DECISIONS.md, "Verdicts: proved by simulation"): a run's outcome is

    y(variant, seed) = base + truth(variant) + u(seed) + w(seed, head) + w(seed, cccp) + w(seed, dropout) + e

with a seed effect u ~ N(0, SEED_SD²) shared by every run of the seed (its data order), seed × level effects
w ~ N(0, LEVEL_SD²) for each axis level (a seed that favours one head), and run noise e ~ N(0, RUN_SD²); test_acc
and gap_acc each follow it independently. `bimodal` puts a share of seeds on a second branch: every GAP cccp-2 run of
such a seed loses BRANCH_DROP of test accuracy (an optimum it never leaves at this budget). Failed training, per GAP
cccp-2 run: `stall` is the share that stall (test and training accuracy at chance), `underfit` the share that lose
BRANCH_DROP of training and test accuracy, ending below the criterion (judge.load.FIT_ACCURACY) without stalling.

    python -m tests.verdict_simulation --reps 2000    # the figures docs/DECISIONS.md quotes
    python -m tests.verdict_simulation --sequential --reps 2000    # the designs of run --until-resolved, measured

The sequential rule (judge.sequential) is simulated through SimHost: every seed a sequence may reach is drawn up
front, each claim's seed-level differences are a linear map of the outcomes (the report's own pairing), and each
sequence runs through judge.sequential.follow, the loop the runner runs.
"""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from judge import sequential, stats
from judge import verdicts as v
from judge.load import FIT_ACCURACY, STALL_MARGIN, Results, flag_training, runs_frame
from judge.looks import SHAPES

HEADS, CCCP, DROPOUT = ("gap", "fc", "alexnet"), (0, 2), (True, False)
BASE = {"test_acc": 0.90, "gap_acc": 0.02}
SEED_SD, LEVEL_SD, RUN_SD = 0.010, 0.004, 0.004
BRANCH_DROP = 0.30
CHANCE = 0.10  # 10 classes
STALL_SD = 0.005  # a stalled run's accuracy around chance
SPEC = {"name": "sim", "axes": {"head": list(HEADS), "cccp": list(CCCP), "dropout": list(DROPOUT)},
        "settings": {"gap_relu": False}}  # fmt: skip
DIFFERENCE_CLAIMS = (
    "gap_overfitting_vs_fc", "gap_overfitting_vs_alexnet", "gap_accuracy_vs_fc", "gap_accuracy_vs_alexnet",
    "cccp_2_vs_0_accuracy", "dropout_overfitting", "dropout_accuracy",
)  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    """True effects (fractions) by (axis, level) and metric, added to every run at that level; the rest is noise."""

    seeds: int = 5
    effects: dict[tuple[str, Any, str], float] = field(default_factory=dict)  # (axis, level, metric) → shift
    seed_sd: float = SEED_SD
    level_sd: float = LEVEL_SD
    run_sd: float = RUN_SD
    bimodal: float = 0.0  # share of seeds on the second branch
    stall: float = 0.0  # share of GAP cccp-2 runs that stall
    underfit: float = 0.0  # share of GAP cccp-2 runs that under-fit (never reach the criterion), exclusive of stall


def variants() -> list[dict[str, Any]]:
    rows = [{"model": "nin", "head": h, "cccp": c, "dropout": d, "gap_relu": False if h == "gap" else None}
            for h in HEADS for c in CCCP for d in DROPOUT]  # fmt: skip
    rows.append({"model": "nin", "head": "gap", "cccp": 2, "dropout": True, "gap_relu": True})
    rows.append({"model": "alexnet", "head": None, "cccp": None, "dropout": True, "gap_relu": None})
    return rows


def expected_outcome(scenario: Scenario, run: pd.Series, metric: str) -> float:
    """A run's mean outcome over the noise: its level shifts, and the second branch's share of its drop."""
    if run["model"] != "nin":
        return BASE[metric]
    value = BASE[metric] + sum(shift for (axis, level, m), shift in scenario.effects.items()
                               if m == metric and run[axis] == level)  # fmt: skip
    if not (run["head"] == "gap" and run["cccp"] == 2):
        return value
    if metric == "test_acc":  # a stalled run sits at chance; an under-fitted one lost BRANCH_DROP
        value -= scenario.bimodal * BRANCH_DROP
        return scenario.stall * CHANCE + (1 - scenario.stall) * value - scenario.underfit * BRANCH_DROP
    return (1 - scenario.stall) * value  # a stalled run's gap is 0 on average


def true_difference(scenario: Scenario, claim: v.Claim) -> float:
    """The estimand: the mean over the contrast's settings of level a's expected outcome minus level b's."""
    structure = result_set(Scenario(seeds=3), np.random.default_rng(0))
    runs = structure.runs.set_index("variant_id")
    contrast = next(c for c in stats.matched_pairs(structure, claim.axis, claim.a, claim.b) if c.subset in (
        "gap_relu=off", ""))  # fmt: skip
    pairs = contrast.pairs[contrast.pairs["seed_a"] == 0]
    return float(np.mean([expected_outcome(scenario, runs.loc[a], claim.metric)
                          - expected_outcome(scenario, runs.loc[b], claim.metric)
                          for a, b in zip(pairs["variant_id_a"], pairs["variant_id_b"])]))  # fmt: skip


@functools.cache
def _structure(seeds: int) -> pd.DataFrame:
    """The grid's runs as judge.load frames them, outcomes still empty (built once per seed count)."""
    records = []
    for seed in range(seeds):
        for row in variants():
            name = "alexnet" if row["model"] == "alexnet" else f"{row['head']}-c{row['cccp']}-d{int(row['dropout'])}"
            name += "-relu" if row["gap_relu"] else ""
            records.append({
                "variant_id": f"{name}-s{seed}", "group_id": name, "status": "ok", **row, "seed": seed,
                "num_classes": 10, "epochs": 10, "image_size": 99, "params": None,  # no parameter claims here
                "test_acc": 0.5, "gap_acc": 0.0, "train_acc": 0.5,
            })  # fmt: skip
    return runs_frame(records)


AXES = (("head", HEADS), ("cccp", CCCP), ("dropout", DROPOUT))


@functools.cache
def _layout(seeds: int) -> tuple[np.ndarray, dict[tuple[str, Any], np.ndarray], np.ndarray]:
    """Where the noise model acts on _structure(seeds)'s rows: each run's seed, the NiN runs at each (axis, level),
    and the runs a second-branch seed drops (NiN GAP at cccp 2)."""
    runs = _structure(seeds)
    nin = (runs["model"] == "nin").to_numpy()
    at = {(axis, level): nin & (runs[axis] == level).fillna(False).to_numpy(dtype=bool)
          for axis, levels in AXES for level in levels}  # fmt: skip
    return runs["seed"].to_numpy(dtype=int), at, at[("head", "gap")] & at[("cccp", 2)]


def draw(scenario: Scenario, rng: np.random.Generator, reps: int = 1) -> dict[str, np.ndarray]:
    """test_acc and gap_acc of every run of `reps` grids under the scenario, each reps × runs in _structure's row
    order. One grid (reps 1) takes the very stream result_set always took, so the fixed rule's figures stand."""
    seed_index, at, second = _layout(scenario.seeds)
    n_seeds, n_runs = scenario.seeds, len(seed_index)
    branch = rng.random((reps, n_seeds)) < scenario.bimodal
    out = {}
    for metric, base in BASE.items():
        value = np.full((reps, n_runs), base) + rng.normal(0, scenario.seed_sd, (reps, n_seeds))[:, seed_index]
        value += rng.normal(0, scenario.run_sd, (reps, n_runs))
        for axis, levels in AXES:
            shifts = rng.normal(0, scenario.level_sd, (reps, n_seeds, len(levels)))
            for j, level in enumerate(levels):
                rows = at[(axis, level)]
                value[:, rows] += shifts[:, seed_index[rows], j]
                value[:, rows] += sum(s for (ax, lv, m), s in scenario.effects.items()
                                      if ax == axis and lv == level and m == metric)  # fmt: skip
        if metric == "test_acc":
            value[:, second] -= BRANCH_DROP * branch[:, seed_index[second]]
        out[metric] = value
    if scenario.stall or scenario.underfit:  # drawn after the rest, so that other scenarios keep their stream
        u = rng.random((reps, int(second.sum())))
        stalled, under = u < scenario.stall, (u >= scenario.stall) & (u < scenario.stall + scenario.underfit)
        test, gap = out["test_acc"][:, second], out["gap_acc"][:, second]
        test = np.where(under, test - BRANCH_DROP, test)
        test = np.where(stalled, CHANCE + rng.normal(0, STALL_SD, test.shape), test)
        gap = np.where(stalled, rng.normal(0, STALL_SD, gap.shape), gap)
        out["test_acc"][:, second], out["gap_acc"][:, second] = test, gap
    return out


def framed(seeds: int, outcomes: dict[str, np.ndarray]) -> Results:
    """One grid's results with these outcomes (one value per run of _structure(seeds)), framed as judge.load
    frames them."""
    runs = _structure(seeds).copy()
    for metric in BASE:
        runs[metric] = outcomes[metric]
    runs["train_acc"] = runs["test_acc"] + runs["gap_acc"]
    flag_training(runs)  # from the final training accuracy, as for a result without epochs
    return Results(None, "sim", None, SPEC, runs, pd.DataFrame(), [], [])  # type: ignore[arg-type]


def result_set(scenario: Scenario, rng: np.random.Generator) -> Results:
    """One grid's results under the scenario, framed as judge.load frames them."""
    return framed(scenario.seeds, {metric: values[0] for metric, values in draw(scenario, rng).items()})


def reports(scenario: Scenario, reps: int, seed: int) -> list[pd.DataFrame]:
    """`reps` reports' verdict frames (indexed by claim key), from one seeded stream."""
    rng = np.random.default_rng(seed)
    return [v.table(v.verdicts(result_set(scenario, rng))).set_index("key") for _ in range(reps)]


@functools.cache
def claim(key: str) -> v.Claim:
    structure = result_set(Scenario(seeds=3), np.random.default_rng(0))
    return next(c for c in v.claims(structure) if isinstance(c, v.Claim) and c.key == key)


def mc_se(p: float, reps: int) -> float:
    """Monte-Carlo standard error of a share estimated from `reps` independent reports."""
    return math.sqrt(max(p * (1 - p), 1e-12) / reps)


def seed_level_sd(scenario: Scenario, key: str) -> float:
    """The sd of one seed's averaged difference for a claim: two seed × level effects and the run noise averaged
    over the contrast's settings (the seed effect cancels in a paired difference)."""
    settings = {"head": 4, "cccp": 6, "dropout": 6}[claim(key).axis]  # settings each contrast averages over
    return math.sqrt(2 * scenario.level_sd**2 + 2 * scenario.run_sd**2 / settings)


def noncentral_power(effect_sds: float, seeds: int, confidence: float) -> float:
    """P(the adjusted interval's lower end > 0) for a true effect of `effect_sds` seed-level sds (one-sided part of a
    two-sided interval): the noncentral-t power at the adjusted level."""
    df = seeds - 1
    critical = sps.t.ppf(0.5 + confidence / 2, df)
    return float(sps.nct.sf(critical, df, effect_sds * math.sqrt(seeds)))


def false_verdict(row: pd.Series | Mapping[str, Any], truth: float) -> bool:
    """Whether a claim's verdict is wrong about the true difference (level a minus level b) `truth`."""
    d, margin = row["direction"] * truth, row["margin"]  # the claimed direction is up
    verdict, qualifier = row["verdict"], row["qualifier"]
    if row["rule"] == v.PAIRED_EXACT:  # "trains as often as": contradicted is false where the shares are equal, or
        # where the line names the wrong way (the estimate's sign against the truth's)
        return verdict == v.CONTRADICTED and (truth == 0 or (row["mean"] or 0) * truth < 0)
    if row["rule"] == v.NON_INFERIORITY:
        wrong = (verdict == v.SUPPORTED and d <= -margin) or (verdict == v.CONTRADICTED and d > -margin)
    else:
        wrong = (verdict == v.SUPPORTED and d <= 0) or (verdict == v.CONTRADICTED and d >= 0)
        wrong |= verdict == v.EQUIVALENT and abs(d) >= margin
    # The qualifiers are statements too: "equivalent" and "smaller than the margin" are false at |d| ≥ δ.
    return bool(wrong or (qualifier in (v.EQUIVALENT, v.SMALLER_THAN_MARGIN) and abs(d) >= margin))


def truths(scenario: Scenario) -> dict[str, float]:
    """Each claim's true mean difference under the scenario: of the outcome, or of the share of runs that fit (the
    GAP cccp-2 runs, half of GAP's settings, fail at stall + underfit, and on the second branch)."""
    out = {key: true_difference(scenario, claim(key)) for key in DIFFERENCE_CLAIMS}
    failing = scenario.stall + scenario.underfit + (1 - scenario.stall - scenario.underfit) * scenario.bimodal
    out.update({key: -0.5 * failing for key in TRAINABILITY_CLAIMS})
    return out


def false_verdicts(frame: pd.DataFrame, truth: dict[str, float]) -> pd.Series:
    """Per claim of the family: whether the report's verdict on it is wrong."""
    return pd.Series({key: false_verdict(frame.loc[key], truth[key]) for key in family()})


def covered(frame: pd.DataFrame, truth: dict[str, float]) -> pd.Series:  # the difference claims: intervals
    """Per difference claim: whether its adjusted interval holds the true mean difference."""
    return pd.Series({key: bool(frame.loc[key, "ci_low_adjusted"] <= truth[key] <= frame.loc[key, "ci_high_adjusted"])
                      for key in DIFFERENCE_CLAIMS})  # fmt: skip


def quiet(cccp_effect_sds: float, delta: float = v.DEFAULT_MARGINS["test_acc"]) -> Scenario:
    """Seed-level sd of a head difference exactly δ/4, and a cccp effect of `cccp_effect_sds` seed-level sds."""
    run_sd = 0.002
    level_sd = math.sqrt(((delta / 4) ** 2 - 2 * run_sd**2 / 4) / 2)  # head contrasts average 4 settings
    base = Scenario(level_sd=level_sd, run_sd=run_sd)
    shift = cccp_effect_sds * seed_level_sd(base, "cccp_2_vs_0_accuracy")
    return Scenario(level_sd=level_sd, run_sd=run_sd, effects={("cccp", 2, "test_acc"): shift})


def boundaries(delta: float = v.DEFAULT_MARGINS["test_acc"]) -> Scenario:
    """GAP's test accuracy δ below the other heads ("matches" at its boundary), cccp +δ and dropout −δ (equivalence
    at its boundary)."""
    return Scenario(effects={("head", "gap", "test_acc"): -delta, ("cccp", 2, "test_acc"): delta,
                             ("dropout", True, "test_acc"): -delta})  # fmt: skip


def share(frames: list[pd.DataFrame], key: str, words: tuple[str, ...]) -> float:
    return float(np.mean([f.loc[key, "verdict"] in words or f.loc[key, "qualifier"] in words for f in frames]))


# ---- the sequential rule (run --until-resolved): a fast host for judge.sequential.follow -----------------------
GRID_SEEDS = 5  # the quick grid's seeds: the first look of its sequence


@functools.cache
def _pairing(seeds: int) -> dict[str, np.ndarray]:
    """Each difference claim's seed-level differences as a linear map of one grid's outcomes (weights seeds × runs
    of _structure(seeds)), from the report's own pairs: stats.matched_pairs, in the subset whose variants
    verdicts.claim_variants names, each seed's pairs averaged as stats.seed_differences averages them (no run of
    this noise model stalls, so no pair or seed is left out)."""
    structure = framed(seeds, {metric: _structure(seeds)[metric].to_numpy() for metric in BASE})
    ids = pd.Index(structure.runs["variant_id"])
    out = {}
    for key in DIFFERENCE_CLAIMS:
        pairs = _claim_pairs(structure, key)
        seed = pairs["seed_a"].to_numpy(dtype=int)
        part = 1.0 / np.bincount(seed, minlength=seeds)[seed]  # each pair's part of its seed's mean
        weights = np.zeros((seeds, len(ids)))
        np.add.at(weights, (seed, ids.get_indexer(pairs["variant_id_a"])), part)
        np.add.at(weights, (seed, ids.get_indexer(pairs["variant_id_b"])), -part)
        out[key] = weights
    return out


@functools.cache
def _t_quantile(n: int, confidence: float) -> float:
    return stats.t_quantile(n, confidence)


@functools.cache
def _claim_groups(key: str) -> frozenset[str]:
    return frozenset(v.claim_variants(result_set(Scenario(seeds=3), np.random.default_rng(0)), {key}))


@functools.cache
def groups_of(keys: frozenset[str]) -> list[str]:
    """The variants (group ids) a new seed goes to while these claims are open, as verdicts.claim_variants says."""
    # claim_variants is the union over the claims of each claim's variants; one call per claim (60 ms each) instead of
    # one per set of open claims (up to 127 sets) keeps a simulation of thousands of sequences fast. The suite checks
    # the union against claim_variants on sets of claims.
    return sorted(frozenset().union(*(_claim_groups(key) for key in keys)))


TRAINABILITY_CLAIMS = ("gap_trains_as_often_as_fc", "gap_trains_as_often_as_alexnet")


def _claim_pairs(structure: Results, key: str) -> pd.DataFrame:
    """The pairs of the one contrast a claim reads: the subset whose variants verdicts.claim_variants names."""
    c = claim(key)
    groups = v.claim_variants(structure, {key})
    chosen = [x for x in stats.matched_pairs(structure, c.axis, c.a, c.b)
              if set(x.pairs["group_id_a"]) | set(x.pairs["group_id_b"]) == groups]  # fmt: skip
    assert len(chosen) == 1, (key, [x.subset for x in chosen])
    return chosen[0].pairs


@functools.cache
def _trainability_pairs(seeds: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each trainability claim's pairs as run indices of _structure(seeds): (GAP side, other side, the pair's seed),
    from the report's own contrast (the subset verdicts.claim_variants names)."""
    structure = framed(seeds, {metric: _structure(seeds)[metric].to_numpy() for metric in BASE})
    ids = pd.Index(structure.runs["variant_id"])
    out = {}
    for key in TRAINABILITY_CLAIMS:
        pairs = _claim_pairs(structure, key)
        out[key] = (ids.get_indexer(pairs["variant_id_a"]), ids.get_indexer(pairs["variant_id_b"]),
                    pairs["seed_a"].to_numpy(dtype=int))  # fmt: skip
    return out


def fit_flags(outcomes: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(fit, failed training) of each run from its outcomes, as judge.load.flag_training decides for a result
    without epochs (the suite checks the two agree): training accuracy = test + gap."""
    train = outcomes["test_acc"] + outcomes["gap_acc"]
    stalled = train <= CHANCE + STALL_MARGIN
    fit = ~stalled & (train >= FIT_ACCURACY)
    return fit, ~fit


class SimHost:
    """judge.sequential.Host over one simulated grid whose every seed the design may reach is drawn up front. A look
    judges each claim as the report does (its seed-level differences at the look's seeds, a Student-t interval at the
    look's confidence cut at the difference's range, verdicts.decide; the trainability claims by
    verdicts.trainability_decision on the same pairs), from the linear map `_pairing`, without building a report:
    ~1000 times faster than judge.sequential.judge_look, and equal to it (the suite checks). `leave_failed` judges as
    the per-protocol analysis does (the sensitivity analysis, and the rule before intention to treat): seeds with a
    failed run in a claim's pairs out."""

    def __init__(self, outcomes: dict[str, np.ndarray], differences: dict[str, np.ndarray] | None = None,
                 margins: dict[str, float] | None = None, leave_failed: bool = False) -> None:  # fmt: skip
        self.outcomes = outcomes  # metric → one value per run of _structure(seeds)
        self.seeds = len(outcomes["test_acc"]) // len(variants())
        pairing = _pairing(self.seeds)
        if differences is None:
            differences = {key: pairing[key] @ outcomes[claim(key).metric] for key in DIFFERENCE_CLAIMS}
        self.differences = differences  # claim → seed-level difference of each seed 0 .. seeds − 1
        self.margins = {**v.DEFAULT_MARGINS, **(margins or {})}
        self.fit, failed = fit_flags(outcomes)
        self.leave_failed = leave_failed
        # claim → seeds with a failed run among its pairs (what the per-protocol analysis leaves out)
        self.failed_seeds = {key: (np.abs(pairing[key]) > 0) @ failed > 0 for key in DIFFERENCE_CLAIMS}

    def ready(self, seeds: Sequence[int], looks: Sequence[sequential.Look]) -> bool:
        return True  # every run is drawn already

    def judge(self, seeds: Sequence[int], confidence: float, keys: Sequence[str]) -> dict[str, sequential.ClaimAtLook]:
        return {key: sequential.ClaimAtLook(**judged) for key, judged in self.judged(seeds, confidence, keys).items()}

    def judged(self, seeds: Sequence[int], confidence: float, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each claim's verdict, qualifier, mean, interval and seeds, as plain values (the fast path's rows)."""
        index = np.asarray(seeds, dtype=int)
        out = {}
        for key in keys:
            if key in TRAINABILITY_CLAIMS:
                out[key] = self._trainability(key, index, confidence)
                continue
            kept = index[~self.failed_seeds[key][index]] if self.leave_failed else index
            out[key] = self._judged(claim(key), self.differences[key][kept], confidence)
        return out

    def groups(self, keys: frozenset[str]) -> list[str]:
        return groups_of(keys)

    def record(self, look: sequential.Look) -> None:
        pass  # follow returns the looks

    def _judged(self, c: v.Claim, values: np.ndarray, confidence: float) -> dict[str, Any]:
        n = len(values)
        out = {"verdict": v.INCONCLUSIVE, "qualifier": "", "mean": float(values.mean()) if n else None,
               "ci_low": None, "ci_high": None, "n_seeds": n}  # fmt: skip
        if n < stats.MIN_INTERVAL_N:
            return out
        half = _t_quantile(n, confidence) * float(values.std(ddof=1)) / math.sqrt(n)
        low_bound, high_bound = stats.metric_range(c.metric, difference=True)  # type: ignore[misc]
        low, high = max(out["mean"] - half, low_bound), min(out["mean"] + half, high_bound)
        verdict, qualifier = v.decide(c.rule, low, high, self.margins[c.metric], c.direction)
        out.update(verdict=verdict, qualifier=qualifier, ci_low=low, ci_high=high)
        return out

    def _trainability(self, key: str, index: np.ndarray, confidence: float) -> dict[str, Any]:
        side_a, side_b, pair_seed = _trainability_pairs(self.seeds)[key]
        chosen = np.isin(pair_seed, index)
        fit_a, fit_b = self.fit[side_a[chosen]], self.fit[side_b[chosen]]
        if self.leave_failed:  # pairs with a failed run out: only runs that trained remain
            fit_a, fit_b = fit_a[fit_a & fit_b], fit_b[fit_a & fit_b]
        verdict, _, _, _ = v.trainability_decision(fit_a, fit_b, confidence)
        mean = float(fit_a.mean() - fit_b.mean()) if len(fit_a) else None
        return {"verdict": verdict, "qualifier": "", "mean": mean, "ci_low": None, "ci_high": None,
                "n_seeds": len(np.unique(pair_seed[chosen]))}  # fmt: skip


def hosts(scenario: Scenario, seeds: int, reps: int, rng: np.random.Generator,
          leave_failed: bool = False) -> list[SimHost]:  # fmt: skip
    """`reps` simulated grids of `seeds` seeds each under the scenario (its own seed count aside), drawn at once.
    Failed training stays in every pair (intention to treat), so the seed-level differences are a linear map of the
    outcomes whatever stalls."""
    outcomes = draw(replace(scenario, seeds=seeds), rng, reps)
    pairing = _pairing(seeds)
    differences = {key: outcomes[claim(key).metric] @ pairing[key].T for key in DIFFERENCE_CLAIMS}  # reps × seeds
    return [SimHost({m: x[r] for m, x in outcomes.items()}, {k: d[r] for k, d in differences.items()},
                    leave_failed=leave_failed) for r in range(reps)]  # fmt: skip


def fast_reports(scenario: Scenario, reps: int, seed: int) -> list[pd.DataFrame]:
    """`reps` reports' verdicts under the scenario through the fast path (what `reports` gives, for the family's
    claims: verdict, qualifier, mean, adjusted interval, and what false_verdict reads), from one seeded stream."""
    grids = hosts(scenario, scenario.seeds, reps, np.random.default_rng(seed))
    frames = []
    for judged in fixed_rule(grids):
        rows = {key: {**claim_row(key, j), "ci_low_adjusted": j["ci_low"], "ci_high_adjusted": j["ci_high"],
                      "n_seeds": j["n_seeds"]} for key, j in judged.items()}  # fmt: skip
        frames.append(pd.DataFrame.from_dict(rows, orient="index"))
    return frames


def fixed_rule(grids: list[SimHost], confidence: float | None = None) -> list[dict[str, dict[str, Any]]]:
    """Each grid judged once by the fixed rule at its every seed: the report's verdicts, through the fast host.
    `confidence` other than the family's level makes a deliberately loosened rule (the negative controls)."""
    level = v.family_confidence(len(family())) if confidence is None else confidence
    return [g.judged(range(g.seeds), level, family()) for g in grids]


@functools.cache
def family() -> tuple[str, ...]:
    """The difference claims the quick structure tests, in the report's order: the family the runner plans over."""
    return tuple(c.key for c in v.testable_claims(result_set(Scenario(seeds=3), np.random.default_rng(0))))


def design(first: int = GRID_SEEDS, max_seeds: int = sequential.DEFAULT_MAX_SEEDS,
           per_round: int = sequential.DEFAULT_SEEDS_PER_ROUND,
           shape: str = sequential.SHAPE) -> sequential.Design:  # fmt: skip
    """The sequence `run --until-resolved` plans for the quick grid (by default: 5 grid seeds, --max-seeds 12)."""
    return sequential.plan(family(), first, per_round, max_seeds, shape)


def follow_all(plan: sequential.Design, grids: list[SimHost]) -> list[list[sequential.Look]]:
    """Each grid's sequence from the plan's first look, by judge.sequential.follow: the loop the runner runs."""
    first = plan.schedule[0]
    return [sequential.follow(plan, [], list(range(first)), len(variants()) * first, host) for host in grids]


def sequences(scenario: Scenario, plan: sequential.Design, reps: int, seed: int) -> list[list[sequential.Look]]:
    """`reps` sequences under the scenario, from one seeded stream."""
    return follow_all(plan, hosts(scenario, plan.max_seeds, reps, np.random.default_rng(seed)))


def claim_row(key: str, judged: Mapping[str, Any] | sequential.ClaimAtLook) -> dict[str, Any]:
    """A claim's verdict as a look (or SimHost.judged) states it, with what false_verdict reads of the claim."""
    c = claim(key)
    judged = judged.as_record() if isinstance(judged, sequential.ClaimAtLook) else judged
    return {"rule": c.rule, "direction": c.direction, "margin": v.DEFAULT_MARGINS.get(c.metric, math.nan),
            "verdict": judged["verdict"], "qualifier": judged["qualifier"], "mean": judged["mean"]}  # fmt: skip


def ever_false(looks: list[sequential.Look], truth: dict[str, float]) -> bool:
    """Whether any look of the sequence states a false verdict on any claim (false_verdict)."""
    return any(false_verdict(claim_row(key, c), truth[key]) for look in looks for key, c in look.claims.items())


def resolved(judged: Mapping[str, Any] | sequential.ClaimAtLook, key: str, truth: dict[str, float]) -> bool:
    """Whether a claim's verdict resolves it correctly: anything but inconclusive, and not false."""
    row = claim_row(key, judged)
    return row["verdict"] != v.INCONCLUSIVE and not false_verdict(row, truth[key])


def stopped_at(looks: list[sequential.Look], key: str) -> int:
    """The seeds at which the sequence stopped judging a claim: the look that closed it, else its last look."""
    return looks[-1].claims[key].closed_at_seeds or looks[-1].n_seeds


def runs_trained(plan: sequential.Design, looks: list[sequential.Look]) -> int:
    """The grid's runs and every run the looks added."""
    return sequential.runs_of(len(variants()) * plan.schedule[0], looks)


def claimed_effects(effect_sds: float, base: Scenario | None = None) -> Scenario:
    """A true difference of `effect_sds` seed-level sds (seed_level_sd) on every difference claim, each in its claimed
    direction: GAP's overfitting gap lower and test accuracy higher (one shift of the GAP level, so both other heads
    see it), cccp 2's test accuracy higher, dropout's overfitting gap lower and test accuracy higher."""
    base = base or Scenario()
    sd = {axis: seed_level_sd(base, key) for axis, key in (("head", "gap_accuracy_vs_fc"),
                                                           ("cccp", "cccp_2_vs_0_accuracy"),
                                                           ("dropout", "dropout_accuracy"))}  # fmt: skip
    effects = {("head", "gap", "gap_acc"): -effect_sds * sd["head"],
               ("head", "gap", "test_acc"): effect_sds * sd["head"], ("cccp", 2, "test_acc"): effect_sds * sd["cccp"],
               ("dropout", True, "gap_acc"): -effect_sds * sd["dropout"],
               ("dropout", True, "test_acc"): effect_sds * sd["dropout"]}  # fmt: skip
    return replace(base, effects=effects)


SHORT = {"gap_overfitting_vs_fc": "GAP gap vs FC", "gap_overfitting_vs_alexnet": "GAP gap vs AlexNet",
         "gap_accuracy_vs_fc": "GAP acc vs FC", "gap_accuracy_vs_alexnet": "GAP acc vs AlexNet",
         "cccp_2_vs_0_accuracy": "cccp 2 vs 0 acc", "dropout_overfitting": "dropout gap",
         "dropout_accuracy": "dropout acc"}  # fmt: skip


def sequential_main(reps: int, first: int = GRID_SEEDS, most: int = sequential.DEFAULT_MAX_SEEDS) -> int:
    """Markdown tables: each shape's sequence and the fixed design at `most` seeds, on the same simulated grids.
    Per claim 'resolved / supported / mean seeds at stop': resolved = the share closed (sequence) or not inconclusive
    (fixed) by a verdict that is not false; supported = the share whose verdict is supported; seeds at stop = the
    look that closed it, else the last look's."""
    fixed_level = v.family_confidence(len(family()))
    fixed_runs = len(variants()) * most
    print(f"{reps} sequences per row; MC SE of a share ≤ {mc_se(0.5, reps):.3f}; fixed: every variant × {most} seeds, "
          f"judged once at {fixed_level:.4%} ({fixed_runs} runs)")  # fmt: skip
    for effect in (0.0, 0.5, 1.0):
        scenario = claimed_effects(effect)
        truth = truths(scenario)
        grids = hosts(scenario, most, reps, np.random.default_rng(6000 + int(10 * effect)))
        print(f"\ntrue effect {effect:g} seed-level sd on every claim, claimed direction; {first} → {most} seeds, "
              f"1 per round\n")  # fmt: skip
        print("| design | mean runs | any false verdict | " + " | ".join(SHORT[k] for k in family()) + " |")
        print("|---" * (3 + len(family())) + "|")
        for shape in SHAPES:
            plan = design(first, most, 1, shape)
            looks = follow_all(plan, grids)
            cells = [f"{np.mean([resolved(s[-1].claims[k], k, truth) for s in looks]):.3f} / "
                     f"{np.mean([s[-1].claims[k].verdict == v.SUPPORTED for s in looks]):.3f} / "
                     f"{np.mean([stopped_at(s, k) for s in looks]):.2f}" for k in family()]  # fmt: skip
            print(f"| {shape} | {np.mean([runs_trained(plan, s) for s in looks]):.1f} | "
                  f"{np.mean([ever_false(s, truth) for s in looks]):.3f} | " + " | ".join(cells) + " |")  # fmt: skip
        judged = [g.judged(range(most), fixed_level, family()) for g in grids]
        wrong = np.mean([any(false_verdict(claim_row(k, j[k]), truth[k]) for k in family()) for j in judged])
        cells = [f"{np.mean([resolved(j[k], k, truth) for j in judged]):.3f} / "
                 f"{np.mean([j[k]['verdict'] == v.SUPPORTED for j in judged]):.3f} / {most}"
                 for k in family()]  # fmt: skip
        print(f"| fixed at {most} | {fixed_runs} | {wrong:.3f} | " + " | ".join(cells) + " |")
    print("\nany false verdict: null from 3 to 20 seeds, and bimodal seeds (share 0.2) from 5 to 12; 1 per round\n")
    print("| scenario | design | mean runs | any false verdict |\n|---|---|---|---|")
    for name, scenario, start, end, seed in (("null", Scenario(), 3, 20, 6100),
                                             ("bimodal 0.2", Scenario(bimodal=0.2), first, most, 6200)):  # fmt: skip
        grids = hosts(scenario, end, reps, np.random.default_rng(seed))
        truth = truths(scenario)
        for shape in SHAPES:
            plan = design(start, end, 1, shape)
            looks = follow_all(plan, grids)
            print(f"| {name}, {start} → {end} | {shape} | {np.mean([runs_trained(plan, s) for s in looks]):.1f} | "
                  f"{np.mean([ever_false(s, truth) for s in looks]):.3f} |")  # fmt: skip
        judged = [g.judged(range(end), v.family_confidence(len(family())), family()) for g in grids]
        wrong = np.mean([any(false_verdict(claim_row(k, j[k]), truth[k]) for k in family()) for j in judged])
        print(f"| {name}, {start} → {end} | fixed at {end} | {len(variants()) * end} | {wrong:.3f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.verdict_simulation", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--sequential", action="store_true", help="the designs of run --until-resolved instead")
    args = parser.parse_args(argv)
    reps = args.reps
    if args.sequential:
        return sequential_main(reps)
    k = len(DIFFERENCE_CLAIMS)
    level = v.family_confidence(k)

    def line(text: str, p: float) -> None:
        print(f"{text}: {p:.3f} (MC SE {mc_se(p, reps):.3f})")

    for seeds in (3, 5):
        scenario = Scenario(seeds=seeds)
        frames = reports(scenario, reps, 1000 + seeds)
        truth = truths(scenario)
        wrong = pd.DataFrame([false_verdicts(f, truth) for f in frames])
        cover = pd.DataFrame([covered(f, truth) for f in frames])
        line(f"null, {seeds} seeds: reports with any false verdict", wrong.any(axis=1).mean())
        line(f"null, {seeds} seeds: simultaneous coverage", cover.all(axis=1).mean())
        print(f"null, {seeds} seeds: per-claim coverage {cover.to_numpy().mean():.4f} (nominal {level:.4f})")
        ni = ("gap_accuracy_vs_fc", "gap_accuracy_vs_alexnet")
        line(f"null, {seeds} seeds: 'matches or beats' supported", np.mean([share(frames, key, (v.SUPPORTED,))
                                                                            for key in ni]))  # fmt: skip
    frames = reports(boundaries(), reps, 2000)
    for key in ("gap_accuracy_vs_fc", "gap_accuracy_vs_alexnet"):
        line(f"boundary −δ, {key}: false supported", share(frames, key, (v.SUPPORTED,)))
    for key in ("cccp_2_vs_0_accuracy", "dropout_accuracy", "gap_accuracy_vs_fc"):
        line(f"boundary |effect| = δ, {key}: false equivalent", share(frames, key, (v.EQUIVALENT,)))
    for sds in (1.0, 2.0):
        scenario = quiet(sds)
        frames = reports(scenario, reps, 3000 + int(sds))
        found = share(frames, "cccp_2_vs_0_accuracy", (v.SUPPORTED,))
        line(f"power, effect {sds:g} seed-level sd, 5 seeds (noncentral t {noncentral_power(sds, 5, level):.3f})",
             found)  # fmt: skip
        for key in ("gap_accuracy_vs_fc", "gap_accuracy_vs_alexnet"):
            line(f"equal heads, seed-level sd δ/4, {key} resolved", share(frames, key, (v.SUPPORTED,)))
    for seeds in (3, 5):
        scenario = Scenario(seeds=seeds, bimodal=0.2)
        frames = reports(scenario, reps, 4000 + seeds)
        truth = truths(scenario)
        cover = pd.DataFrame([covered(f, truth) for f in frames])
        wrong = pd.DataFrame([false_verdicts(f, truth) for f in frames])
        line(f"bimodal (share 0.2), {seeds} seeds: simultaneous coverage", cover.all(axis=1).mean())
        print(f"bimodal (share 0.2), {seeds} seeds: per-claim coverage {cover.to_numpy().mean():.4f}")
        line(f"bimodal (share 0.2), {seeds} seeds: reports with any false verdict", wrong.any(axis=1).mean())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
