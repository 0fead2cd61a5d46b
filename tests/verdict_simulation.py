"""Synthetic result sets with known truth in the quick grid's real structure, judged by the report's own rule.

Structure (ablations/quick.yaml): head {gap, fc, alexnet} × cccp {0, 2} × dropout {on, off} on NiN, plus its two
include rows (the seeds' exact ReLU-before-GAP head at cccp 2 with dropout, and d2l's AlexNet reference), × seeds.

Noise model (docs/DECISIONS.md, "Verdicts: proved by simulation"): a run's outcome is

    y(variant, seed) = base + truth(variant) + u(seed) + w(seed, head) + w(seed, cccp) + w(seed, dropout) + e

with a seed effect u ~ N(0, SEED_SD²) shared by every run of the seed (its data order), seed × level effects
w ~ N(0, LEVEL_SD²) for each axis level (a seed that favours one head), and run noise e ~ N(0, RUN_SD²); test_acc
and gap_acc each follow it independently. `bimodal` puts a share of seeds on a second branch: every GAP cccp-2 run of
such a seed loses BRANCH_DROP of test accuracy (an optimum it never leaves at this budget).

    python -m tests.verdict_simulation --reps 2000    # the figures docs/DECISIONS.md quotes
"""

from __future__ import annotations

import argparse
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from reports import stats
from reports import verdicts as v
from reports.load import STALL_MARGIN, Results, runs_frame, underfit

HEADS, CCCP, DROPOUT = ("gap", "fc", "alexnet"), (0, 2), (True, False)
BASE = {"test_acc": 0.90, "gap_acc": 0.02}
SEED_SD, LEVEL_SD, RUN_SD = 0.010, 0.004, 0.004
BRANCH_DROP = 0.30
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
    if metric == "test_acc" and run["head"] == "gap" and run["cccp"] == 2:
        value -= scenario.bimodal * BRANCH_DROP
    return value


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
    """The grid's runs as reports.load frames them, outcomes still empty (built once per seed count)."""
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


def result_set(scenario: Scenario, rng: np.random.Generator) -> Results:
    """One grid's results under the scenario, framed as reports.load frames them."""
    runs = _structure(scenario.seeds).copy()
    nin = (runs["model"] == "nin").to_numpy()
    n_seeds = scenario.seeds
    seed_index = runs["seed"].to_numpy(dtype=int)
    branch = rng.random(n_seeds) < scenario.bimodal
    for metric, base in BASE.items():
        value = np.full(len(runs), base) + rng.normal(0, scenario.seed_sd, n_seeds)[seed_index]
        value += rng.normal(0, scenario.run_sd, len(runs))
        for axis, levels in (("head", HEADS), ("cccp", CCCP), ("dropout", DROPOUT)):
            shifts = rng.normal(0, scenario.level_sd, (n_seeds, len(levels)))
            for j, level in enumerate(levels):
                at = nin & (runs[axis] == level).fillna(False).to_numpy(dtype=bool)
                value[at] += shifts[seed_index[at], j]
                value[at] += sum(s for (ax, lv, m), s in scenario.effects.items()
                                 if ax == axis and lv == level and m == metric)  # fmt: skip
        if metric == "test_acc":
            second = nin & branch[seed_index] & (runs["head"] == "gap").fillna(False).to_numpy(dtype=bool) & (
                runs["cccp"] == 2).fillna(False).to_numpy(dtype=bool)  # fmt: skip
            value[second] -= BRANCH_DROP
        runs[metric] = value
    runs["train_acc"] = runs["test_acc"] + runs["gap_acc"]
    chance = 1.0 / runs["num_classes"].astype("float64")
    runs["stalled"] = (runs["status"] == "ok") & (runs["test_acc"] <= chance + STALL_MARGIN)
    runs["underfit"] = underfit(runs)
    return Results(None, "sim", None, SPEC, runs, pd.DataFrame(), [], [])  # type: ignore[arg-type]


def reports(scenario: Scenario, reps: int, seed: int) -> list[pd.DataFrame]:
    """`reps` reports' verdict frames (indexed by claim key), from one seeded stream."""
    rng = np.random.default_rng(seed)
    return [v.verdicts(result_set(scenario, rng)).set_index("key") for _ in range(reps)]


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


def false_verdict(row: pd.Series, truth: float) -> bool:
    """Whether a claim's verdict is wrong about the true difference (level a minus level b) `truth`."""
    d, margin = row["direction"] * truth, row["margin"]  # the claimed direction is up
    verdict, qualifier = row["verdict"], row["qualifier"]
    if row["rule"] == v.NON_INFERIORITY:
        wrong = (verdict == v.SUPPORTED and d <= -margin) or (verdict == v.CONTRADICTED and d > -margin)
    else:
        wrong = (verdict == v.SUPPORTED and d <= 0) or (verdict == v.CONTRADICTED and d >= 0)
        wrong |= verdict == v.EQUIVALENT and abs(d) >= margin
    return bool(wrong or (qualifier == v.EQUIVALENT and abs(d) >= margin))


def truths(scenario: Scenario) -> dict[str, float]:
    """Each difference claim's true mean difference under the scenario."""
    return {key: true_difference(scenario, claim(key)) for key in DIFFERENCE_CLAIMS}


def false_verdicts(frame: pd.DataFrame, truth: dict[str, float]) -> pd.Series:
    """Per difference claim: whether the report's verdict on it is wrong."""
    return pd.Series({key: false_verdict(frame.loc[key], truth[key]) for key in DIFFERENCE_CLAIMS})


def covered(frame: pd.DataFrame, truth: dict[str, float]) -> pd.Series:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.verdict_simulation", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000)
    reps = parser.parse_args(argv).reps
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
