"""The NiN paper's and the seeds' claims, each judged on this grid's numbers by the rule its words mean.

    found = verdicts(results)   # one judge.records.Verdict per claim: numbers and a reason code
    frame = table(found)        # the same as a frame; reports.words says each in words

A claim about a measured difference is judged on one interval per claim, with one error budget per report:
- the seed is the unit: a contrast's pairs are averaged within each seed (stats.seed_differences), then a Student-t
  interval over seeds with n_seeds − 1 degrees of freedom;
- the interval is simultaneous over the report's family of k difference claims (Bonferroni: level 1 − 0.05/k), so
  the chance that any supported, contradicted or equivalent verdict of the report is wrong is at most 5%;
- *superiority* claims ("raises", "reduces", "localises better") are supported when the interval lies on the
  claimed side of 0, contradicted when it lies on the other side, equivalent when it contains 0 inside (−δ, +δ);
  *non-inferiority* claims ("matches or beats") are supported when the interval's claimed-side end is past −δ,
  contradicted when it lies wholly beyond −δ. Margins δ come from the grid file's `margins:` (DEFAULT_MARGINS).
Otherwise a claim is inconclusive, and the row gives a planning figure for a new, independent grid. Every run the grid
launched that ended is judged, failed training included (judge.load: stalled, under-fitted, diverged runs stay in
their pairs with their outcome); a run missing for a reason not the method's leaves its seed. The analysis without
failed runs is a sensitivity analysis (`sensitivity`), outside the budget and without verdict words.
Trainability ("GAP trains as often as the other head") is judged by an exact paired test on the runs that fit
(McNemar), at the family's level; training time to the criterion by the superiority rule in epochs and in log wall
seconds. A claim about parameter counts is judged on the exact ratio GAP/other at matched settings (a count has no
interval). Proved by simulation: tests/judge/test_verdict_simulation.py.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from judge import stats
from judge.load import PAPER_LABELS, Results, labels
from judge.records import ExactHead, Fit, Ratio, Reason, Verdict
from nin.errors import InputError

SUPPORTED, CONTRADICTED, EQUIVALENT, INCONCLUSIVE = "supported", "contradicted", "equivalent", "inconclusive"
NOT_TESTED = "not tested by this grid"
SUPERIORITY, NON_INFERIORITY, EXACT = "superiority", "non-inferiority", "exact count"
PAIRED_EXACT = "exact paired test (McNemar)"  # the trainability claims: shares of runs that fit, paired
SMALLER_THAN_MARGIN = "smaller than the margin"
FAMILY_ERROR = 0.05  # the report's error budget: P(any wrong supported/contradicted/equivalent verdict) ≤ this
# Margins δ (fractions: 0.01 = 1 accuracy point), chosen before any grid's results (docs/DECISIONS.md, "Margins").
# Training time: 1 epoch to the criterion; 0.10 in log wall seconds (about 10%).
DEFAULT_MARGINS = {"test_acc": 0.01, "gap_acc": 0.01, "loc_pointing": 0.05, "epochs_to_fit": 1.0,
                   "log_seconds_to_fit": 0.10}  # fmt: skip
MARGIN_LIMITS = {"epochs_to_fit": 100.0}  # a margin's upper end where it is not a fraction (below 1)
MAX_SEEDS_NEEDED = 1000  # beyond this the row says "more than 1000 seeds"
OTHER_HEADS = {"fc": "FC", "alexnet": "AlexNet"}
# The columns of a verdicts frame (`table`): the numbers of a Verdict, one row per claim.
COLUMNS = ("key", "claim", "verdict", "rule", "margin", "mean", "ci_low", "ci_high", "confidence_adjusted",
           "ci_low_adjusted", "ci_high_adjusted", "family_size", "n_seeds", "n_pairs", "seeds_left_out",
           "seeds_needed", "runs_flagged", "settings", "planned_settings", "margin_chosen_after", "resolved_at_seeds",
           "look", "kind", "metric", "direction", "qualifier", "reason")  # fmt: skip
SENSITIVITY_COLUMNS = ("key", "claim", "metric", "runs_left_out", "n_seeds", "n_pairs", "mean", "ci_low_adjusted",
                       "ci_high_adjusted", "confidence_adjusted", "mean_all_runs", "ci_low_adjusted_all_runs",
                       "ci_high_adjusted_all_runs", "n_seeds_all_runs", "n_pairs_all_runs")  # fmt: skip
COUNTS = ("seeds_needed", "n_pairs", "n_seeds", "seeds_left_out", "runs_flagged", "family_size", "resolved_at_seeds",
          "look", "settings", "planned_settings")  # fmt: skip


@dataclass(frozen=True)
class Claim:
    """A difference claim: level a minus level b of `axis` in `metric`, claimed in `direction` (+1 up, −1 down)."""

    key: str
    text: str
    axis: str
    a: Any
    b: Any
    metric: str
    direction: int
    rule: str


def parse_margins(value: Any) -> dict[str, float]:
    """A `margins:` mapping (grid file or --margin) → {metric: δ}; ValueError with one line saying what to fix."""
    if not isinstance(value, dict):
        raise ValueError(f"margins must be a mapping of metric to margin, e.g. {{test_acc: 0.01}}, got {value!r}")
    out: dict[str, float] = {}
    for metric, margin in value.items():
        if metric not in DEFAULT_MARGINS:
            raise ValueError(f"unknown margin metric {metric!r}: use {', '.join(DEFAULT_MARGINS)}")
        top = MARGIN_LIMITS.get(metric, 1.0)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin < top:
            what = "epochs" if metric == "epochs_to_fit" else "a fraction: 0.01 = 1 accuracy point"
            raise ValueError(f"margin {metric}: {margin!r} must be a number between 0 and {top:g} ({what})")
        out[metric] = float(margin)
    return out


def report_margins(results: Results, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """DEFAULT_MARGINS, then the grid's `margins:` (spec.yaml), then this report's overrides (--margin)."""
    spec = results.spec.get("margins")
    try:
        grid = parse_margins(spec) if spec is not None else {}
    except ValueError as error:
        where = f"{results.grid_dir}/spec.yaml"
        raise InputError(f"{where}: {error} (fix the grid file's margins: and run it again)") from None
    return {**DEFAULT_MARGINS, **grid, **(overrides or {})}


def claims(results: Results) -> list[Claim | str]:
    """The report's claims in order: a Claim per difference claim, the other head's key for a parameter claim."""
    nin = results.runs[results.runs["model"] == "nin"]
    out: list[Claim | str] = list(OTHER_HEADS)
    for head, name in OTHER_HEADS.items():
        out.append(Claim(f"gap_overfitting_vs_{head}", f"GAP reduces overfitting vs the {name} head", "head", "gap",
                         head, "gap_acc", -1, SUPERIORITY))  # fmt: skip
    for head, name in OTHER_HEADS.items():
        out.append(Claim(f"gap_accuracy_vs_{head}", f"GAP matches or beats the {name} head in test accuracy", "head",
                         "gap", head, "test_acc", +1, NON_INFERIORITY))  # fmt: skip
    cccp = sorted(_levels(nin, "cccp"))
    text = "cccp 1×1 layers raise test accuracy"
    pairs = [(high, low) for i, low in enumerate(cccp) for high in cccp[i + 1 :]]
    for high, low in pairs:
        out.append(Claim(f"cccp_{high}_vs_{low}_accuracy", f"{text} (cccp {high} vs {low})", "cccp", high, low,
                         "test_acc", +1, SUPERIORITY))  # fmt: skip
    if not pairs:
        out.append(Claim("cccp_accuracy", text, "cccp", None, None, "test_acc", +1, SUPERIORITY))
    out.append(Claim("dropout_overfitting", "dropout reduces overfitting", "dropout", True, False, "gap_acc", -1,
                     SUPERIORITY))  # fmt: skip
    out.append(Claim("dropout_accuracy", "dropout raises test accuracy", "dropout", True, False, "test_acc", +1,
                     SUPERIORITY))  # fmt: skip
    for head, name in OTHER_HEADS.items():
        out.append(Claim(f"gap_localisation_vs_{head}", f"GAP's class maps localise better than the {name} head's",
                         "head", "gap", head, "loc_pointing", +1, SUPERIORITY))  # fmt: skip
    # The seeds disagree on training time (one: NiN sometimes needs more; the other: fewer parameters train faster):
    # the claim is stated as "fewer", and its verdict says which way (contradicted: GAP needs more).
    for head, name in OTHER_HEADS.items():
        out.append(Claim(f"{TRAINABILITY_KEY}{head}", f"GAP trains as often as the {name} head (share of runs "
                         f"that reach the criterion)", "head", "gap", head, "fit", +1, PAIRED_EXACT))  # fmt: skip
    for head, name in OTHER_HEADS.items():
        out.append(Claim(f"gap_epochs_to_fit_vs_{head}", f"GAP reaches the training criterion in fewer epochs than "
                         f"the {name} head", "head", "gap", head, "epochs_to_fit", -1, SUPERIORITY))  # fmt: skip
        out.append(Claim(f"{WALL_TIME_KEY}{head}", f"GAP reaches the training criterion in less wall time "
                         f"than the {name} head", "head", "gap", head, "log_seconds_to_fit", -1,
                         SUPERIORITY))  # fmt: skip
    return out


def verdicts(results: Results, margins: dict[str, float] | None = None) -> list[Verdict]:
    """One Verdict per claim: the verdict, its rule and margin, the plain 95% and the family-adjusted interval,
    seeds and pairs, seeds needed, and under-fitted runs it rests on. `margins` overrides the grid's.
    The fixed rule, on every seed; the report of a grid grown by `run --until-resolved` reads
    judge.sequential.report_verdicts, which builds on this."""
    return judge_family(results, margins)


def judge_family(results: Results, margins: dict[str, float] | None = None, confidence: float | None = None,
                 family: int | None = None) -> list[Verdict]:  # fmt: skip
    """The fixed rule on these runs: every difference claim at `confidence` (default: Bonferroni over the claims the
    runs test) as one of a family of `family` claims (default: that many)."""
    context = _context(results, margins)
    listed = claims(results)
    size = len(_testable(context, listed)) if family is None else family
    level = family_confidence(size) if confidence is None else confidence
    return [_params_claim(context, c, OTHER_HEADS[c]) if isinstance(c, str) else context.judge(c, level, size)
            for c in listed]  # fmt: skip


def table(found: list[Verdict]) -> pd.DataFrame:
    """Verdicts as a frame (COLUMNS), one row per claim: counts as nullable integers, a missing number as NaN."""
    rows = [{column: getattr(v, column) for column in COLUMNS} for v in found]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in COUNTS:
        frame[column] = frame[column].astype("Int64")
    frame["reason"] = frame["reason"].map(str)
    return frame


TRAINABILITY_KEY = "gap_trains_as_often_as_"  # the trainability claims' keys: this, then the other head
WALL_TIME_KEY = "gap_seconds_to_fit_vs_"  # the wall-time claims' keys


def holds_sequence_open(key: str) -> bool:
    """Whether an open claim keeps `run --until-resolved` adding seeds. Not a trainability claim (where both heads
    train alike no number of seeds closes it) nor a wall-time claim (seeds must not be bought by the machine's
    clock: a rerun elsewhere would decide otherwise). Both are judged at every look all the same."""
    return not key.startswith((TRAINABILITY_KEY, WALL_TIME_KEY))


def testable_claims(results: Results) -> list[Claim]:
    """The difference claims these runs can test: the report's family."""
    return _testable(_context(results), claims(results))


def claim_variants(results: Results, keys: Collection[str]) -> set[str]:
    """The variants (group ids) on both sides of these claims' pairs: where a new seed must go for them to gain it."""
    context = _context(results)
    out: set[str] = set()
    for claim in _testable(context, claims(results)):
        if claim.key in keys:
            contrast = context.contrast(claim.axis, claim.a, claim.b)
            if contrast is not None:
                out |= set(contrast.pairs["group_id_a"]) | set(contrast.pairs["group_id_b"])
    return out


def family_confidence(k: int) -> float:
    """The level of each of k simultaneous intervals: Bonferroni, 1 − FAMILY_ERROR/k."""
    return 1 - FAMILY_ERROR / max(k, 1)


def decide(rule: str, low: float, high: float, margin: float, direction: int) -> tuple[str, str]:
    """(verdict, qualifier) of a claim from its interval of level a minus level b, claimed in `direction`."""
    lo, hi = (low, high) if direction > 0 else (-high, -low)  # the claimed direction is up
    inside = -margin < lo and hi < margin
    if rule == NON_INFERIORITY:
        if lo > -margin:
            return SUPPORTED, EQUIVALENT if inside else ""
        if hi < -margin:
            return CONTRADICTED, ""
        return INCONCLUSIVE, ""
    if lo > 0:
        return SUPPORTED, SMALLER_THAN_MARGIN if inside else ""
    if hi < 0:
        return CONTRADICTED, SMALLER_THAN_MARGIN if inside else ""
    return (EQUIVALENT, "") if inside else (INCONCLUSIVE, "")


def seeds_needed(rule: str, mean: float, sd: float, margin: float, direction: int, confidence: float) -> int | None:
    """The fewest seeds (≥ MIN_INTERVAL_N) at which an interval at this mean and seed-level sd would resolve the
    claim by its rule; None when the spread is zero or not even MAX_SEEDS_NEEDED seeds would."""
    if not (sd > 0 and math.isfinite(mean)):
        return None
    n, quantiles = _t_quantiles(confidence)
    half = quantiles * sd / np.sqrt(n)
    for size, h in zip(n, half):
        if decide(rule, mean - h, mean + h, margin, direction)[0] != INCONCLUSIVE:
            return int(size)
    return None


@functools.lru_cache(maxsize=16)
def _t_quantiles(confidence: float) -> tuple[np.ndarray, np.ndarray]:
    n = np.arange(stats.MIN_INTERVAL_N, MAX_SEEDS_NEEDED + 1)
    return n, sps.t.ppf(0.5 + confidence / 2, n - 1)


def exact_head(results: Results) -> ExactHead | None:
    """The seeds' exact GAP head (ReLU before GAP) where the grid's GAP axis rows train without it: how often it
    stalled, and its test accuracy where it trained. None where the grid has no such row."""
    nin = results.runs[results.runs["model"] == "nin"]
    main = _main_gap_relu(results, nin)
    if main is not False:
        return None
    rows = nin[(nin["head"] == "gap").fillna(False) & nin["gap_relu"].astype("boolean").fillna(False)]
    if rows.empty:
        return None
    ok = rows[rows["status"] == "ok"]
    trained = ok[~ok["stalled"].astype(bool)]
    names = labels(results.runs, PAPER_LABELS, ", ")
    head = ExactHead(tuple(pd.unique(names[rows.index])), len(rows), len(ok), int(ok["stalled"].sum()))
    if trained.empty:
        return head
    interval = stats.t_interval(trained["test_acc"], stats.metric_range("test_acc"))
    return replace(head, trained=interval["n"], mean=interval["mean"], ci_low=interval["ci_low"],
                   ci_high=interval["ci_high"])  # fmt: skip


# ---- internals ----------------------------------------------------------------------------------------------------
def _context(results: Results, margins: dict[str, float] | None = None) -> _Context:
    nin = results.runs[results.runs["model"] == "nin"]
    context = _Context(results, nin, _main_gap_relu(results, nin), report_margins(results, margins))
    context.chosen_after = set(margins or {})
    return context


def _testable(context: _Context, listed: list[Claim | str]) -> list[Claim]:
    return [c for c in listed if isinstance(c, Claim) and not context.untested(c)]


class _Context:
    def __init__(self, results: Results, nin: pd.DataFrame, main_gap_relu: Any, margins: dict[str, float]) -> None:
        self.results, self.nin, self.main_gap_relu, self.margins = results, nin, main_gap_relu, margins
        self._contrasts: dict[tuple, stats.Contrast | None] = {}
        self._paper_labels: pd.Series | None = None
        self.metrics = stats.effect_metrics(results.runs)
        self._present: dict[str, set[str]] = {}  # axis → its levels among the NiN runs, as text
        self.chosen_after: set[str] = set()  # metrics whose margin this report was given (--margin)

    def missing(self, axis: str, a: Any, b: Any) -> tuple[Reason, tuple[Any, ...]] | None:
        """Why the grid cannot test a contrast of these levels, with the levels missing (None when it can)."""
        if axis not in self._present:
            self._present[axis] = {stats.level_text(axis, v) for v in _levels(self.nin, axis)}
        present = self._present[axis]
        absent = [level for level in (a, b) if level is None or stats.level_text(axis, level) not in present]
        if not absent:
            return None
        if axis not in self.nin.columns or len(present) < 2:
            return Reason.NO_AXIS, ()
        return Reason.NO_LEVEL, tuple(v for v in absent if v is not None)

    def untested(self, claim: Claim) -> tuple[Reason, tuple[Any, ...]] | None:
        """Why the grid cannot test this claim (None when it can): such a claim is outside the report's family."""
        if claim.rule != PAIRED_EXACT and claim.metric not in self.metrics:
            return (Reason.NO_CANVAS if claim.metric == "loc_pointing" else Reason.NOT_MEASURED), ()
        return self.missing(claim.axis, claim.a, claim.b)

    def subset(self, axis: str) -> str:
        """The contrast subset GAP lines use: the GAP head as the grid trains it on its axes."""
        if axis != "head" or self.main_gap_relu is None:
            return ""
        return f"gap_relu={stats.level_text('gap_relu', self.main_gap_relu)}"

    def contrast(self, axis: str, a: Any, b: Any) -> stats.Contrast | None:
        """Level a vs level b, paired, in the subset the claim reads (computed once per contrast)."""
        key = (axis, repr(a), repr(b))
        if key not in self._contrasts:
            found = stats.matched_pairs(self.results, axis, a, b)
            subset = self.subset(axis)
            chosen = [c for c in found if c.subset == subset] or [c for c in found if c.subset == ""]
            self._contrasts[key] = chosen[0] if chosen else None
        return self._contrasts[key]

    def judge(self, claim: Claim, confidence: float, family: int) -> Verdict:
        margin = self.margins.get(claim.metric, math.nan)
        base = Verdict(claim.key, claim.text, "difference", claim.rule, INCONCLUSIVE, Reason.INTERVAL, b=claim.b,
                       metric=claim.metric, direction=claim.direction, margin=margin, axis=claim.axis,
                       margin_chosen_after=claim.metric in self.chosen_after)  # fmt: skip
        untested = self.untested(claim)
        if untested:
            return replace(base, verdict=NOT_TESTED, reason=untested[0], absent=untested[1])
        base = replace(base, family_size=family, confidence_adjusted=confidence)
        contrast = self.contrast(claim.axis, claim.a, claim.b)
        if contrast is None or contrast.pairs.empty:
            return replace(base, reason=Reason.NO_PAIRS, n_pairs=0, n_seeds=0)
        base = replace(base, runs_flagged=len(contrast.failed_runs()))
        if claim.rule == PAIRED_EXACT:
            return self._trainability(claim, contrast, confidence, base)
        judged = self._judged(claim, contrast, confidence, margin)
        if claim.key.startswith(WALL_TIME_KEY):
            judged.update(self.machine_load())
        return replace(base, **{k: v for k, v in judged.items() if k != "std"})

    def machine_load(self) -> dict[str, Any]:
        """The busiest the machine was while the grid's runs trained (result.json's load_avg_max), and its cores:
        what the wall-time claims measured besides training. Empty for runs that did not record it."""
        runs = self.results.runs
        if "load_avg_max" not in runs or runs["load_avg_max"].isna().all():
            return {}
        cores = runs["cpu_count"].max() if "cpu_count" in runs else math.nan
        return {"machine_load": float(runs["load_avg_max"].max()),
                "machine_cores": None if pd.isna(cores) else int(cores)}  # fmt: skip

    def _judged(self, claim: Claim, contrast: stats.Contrast, confidence: float, margin: float,
                leave_out: frozenset[str] = frozenset()) -> dict[str, Any]:  # fmt: skip
        """The claim's numbers and decision on the interval rule, as Verdict fields."""
        by_seed = stats.seed_differences(contrast, claim.metric, leave_out)
        bounds = stats.metric_range(claim.metric, difference=True)
        plain = stats.t_interval(by_seed.values, bounds)
        adjusted = stats.t_interval(by_seed.values, bounds, confidence)
        n = plain["n"]
        out = {"mean": plain["mean"], "ci_low": plain["ci_low"], "ci_high": plain["ci_high"],
               "ci_low_adjusted": adjusted["ci_low"], "ci_high_adjusted": adjusted["ci_high"], "n_seeds": n,
               "n_pairs": by_seed.n_pairs, "seeds_left_out": len(by_seed.seeds_left_out) + len(contrast.missing_seeds),
               "settings": by_seed.settings, "planned_settings": max(contrast.planned_settings, by_seed.settings),
               "verdict": INCONCLUSIVE, "reason": Reason.FEW_SEEDS}  # fmt: skip
        if n < stats.MIN_INTERVAL_N:
            return out
        verdict, qualifier = decide(claim.rule, adjusted["ci_low"], adjusted["ci_high"], margin, claim.direction)
        out.update(verdict=verdict, qualifier=qualifier, reason=Reason.INTERVAL)
        if verdict == INCONCLUSIVE:
            out["seeds_needed"] = seeds_needed(claim.rule, plain["mean"], plain["std"], margin, claim.direction,
                                               confidence)  # fmt: skip
        return out

    def _trainability(self, claim: Claim, contrast: stats.Contrast, confidence: float, base: Verdict) -> Verdict:
        """The share of runs that fit at level a vs level b, on the contrast's pairs (neither side missing): an exact
        two-sided McNemar test at 1 − confidence. Contradicted when it finds the shares differ (the line says which
        way); inconclusive otherwise: equal shares would need a margin on proportions that a few seeds cannot meet."""
        pairs = contrast.pairs
        fit_a = pairs["fit_a"].astype(bool).to_numpy()
        fit_b = pairs["fit_b"].astype(bool).to_numpy()
        verdict, p_value, only_a, only_b = trainability_decision(fit_a, fit_b, confidence)
        fit = Fit(int(fit_a.sum()), int(fit_b.sum()), len(pairs), only_a, only_b, p_value)
        return replace(base, verdict=verdict, reason=Reason.PAIRED_EXACT, fit=fit,
                       mean=float(fit_a.mean() - fit_b.mean()), n_pairs=len(pairs),
                       n_seeds=int(pairs["seed_a"].nunique()), seeds_left_out=0)  # fmt: skip

    def sensitivity(self, claim: Claim, confidence: float) -> dict | None:
        """The claim without the runs whose training failed (their pairs out, a seed left incomplete out whole): a
        sensitivity analysis conditional on the seeds that trained, outside the budget; no verdict."""
        if claim.rule == PAIRED_EXACT or self.untested(claim):
            return None
        contrast = self.contrast(claim.axis, claim.a, claim.b)
        if contrast is None or contrast.pairs.empty:
            return None
        failed = contrast.failed_runs()
        if not failed:
            return None
        margin = self.margins[claim.metric]
        everything = self._judged(claim, contrast, confidence, margin)
        without = self._judged(claim, contrast, confidence, margin, failed)
        return {"key": claim.key, "claim": claim.text, "metric": claim.metric, "runs_left_out": len(failed),
                "n_seeds": without["n_seeds"], "n_pairs": without["n_pairs"], "mean": without["mean"],
                "ci_low_adjusted": without["ci_low_adjusted"], "ci_high_adjusted": without["ci_high_adjusted"],
                "confidence_adjusted": confidence, "mean_all_runs": everything["mean"],
                "ci_low_adjusted_all_runs": everything["ci_low_adjusted"],
                "ci_high_adjusted_all_runs": everything["ci_high_adjusted"],
                "n_seeds_all_runs": everything["n_seeds"], "n_pairs_all_runs": everything["n_pairs"]}  # fmt: skip


def trainability_decision(fit_a: np.ndarray, fit_b: np.ndarray, confidence: float) -> tuple[str, float, int, int]:
    """(verdict, p, pairs where only a fit, pairs where only b fit): the exact two-sided McNemar test (a binomial
    test of the discordant pairs at 1/2) at level 1 − confidence: CONTRADICTED when it rejects equal shares, else
    INCONCLUSIVE."""
    only_a = int((fit_a & ~fit_b).sum())
    only_b = int((~fit_a & fit_b).sum())
    n = only_a + only_b
    p_value = min(1.0, 2 * float(sps.binom.cdf(min(only_a, only_b), n, 0.5))) if n else 1.0
    return (CONTRADICTED if p_value < 1 - confidence else INCONCLUSIVE), p_value, only_a, only_b


def sensitivity(results: Results, margins: dict[str, float] | None = None) -> pd.DataFrame:
    """Each difference claim whose pairs hold a run whose training failed, judged without those runs at the
    family's level (SENSITIVITY_COLUMNS): outside the 5% budget, conditional on the seeds that trained, no verdict;
    the same claim's numbers with every run beside them (the *_all_runs columns)."""
    context = _context(results, margins)
    listed = claims(results)
    level = family_confidence(len(_testable(context, listed)))
    rows = [context.sensitivity(c, level) for c in listed if isinstance(c, Claim)]
    frame = pd.DataFrame([r for r in rows if r is not None], columns=list(SENSITIVITY_COLUMNS))
    for column in ("runs_left_out", "n_seeds", "n_pairs", "n_seeds_all_runs", "n_pairs_all_runs"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _params_claim(context: _Context, head: str, name: str) -> Verdict:
    base = Verdict(f"gap_params_vs_{head}", f"GAP has fewer parameters than the {name} head", "ratio", EXACT,
                   INCONCLUSIVE, Reason.EXACT_COUNT, b=head, axis="head")  # fmt: skip
    missing = context.missing("head", "gap", head)
    if missing:
        return replace(base, verdict=NOT_TESTED, reason=missing[0], absent=missing[1])
    contrast = context.contrast("head", "gap", head)
    pairs = contrast.pairs if contrast is not None else pd.DataFrame()
    pairs = pairs[pairs["params_a"].notna() & pairs["params_b"].notna()] if len(pairs) else pairs
    if pairs.empty:
        return replace(base, reason=Reason.NO_PAIRS, n_pairs=0)
    variants = pairs.drop_duplicates(["group_id_a", "group_id_b"])
    ratios = variants["params_a"] / variants["params_b"]
    if (ratios < 1).all():
        verdict = SUPPORTED
    elif (ratios > 1).all():
        verdict = CONTRADICTED
    else:
        verdict = INCONCLUSIVE
    return replace(base, verdict=verdict, mean=float(ratios.mean()), n_pairs=len(variants),
                   ratios=_ratios(variants, ratios), image_sizes=_image_sizes(variants))  # fmt: skip


def _ratios(variants: pd.DataFrame, ratios: pd.Series) -> tuple[Ratio, ...]:
    """One Ratio per distinct pair of counts, with the settings that change the ratio."""
    groups = variants.assign(_ratio=ratios.to_numpy()).groupby(["params_a", "params_b"], sort=False)
    # Settings that name a distinct ratio: they vary across the pairs and are constant within each ratio.
    names = [c[:-2] for c in variants.columns if c.endswith("_a") and c[:-2] in _DESCRIBE]
    names = [c for c in names if variants[f"{c}_a"].nunique() > 1
             and all(g[f"{c}_a"].nunique() == 1 for _, g in groups)]  # fmt: skip
    return tuple(Ratio(float(params_a), float(params_b), tuple((c, stats.plain(group[f"{c}_a"].iloc[0]))
                                                               for c in names))
                 for (params_a, params_b), group in groups)  # fmt: skip


_DESCRIBE = ("cccp", "dropout", "width", "image_size", "arch", "num_classes", "in_channels")


def _image_sizes(variants: pd.DataFrame) -> tuple[int, ...]:
    if "image_size_a" not in variants:
        return ()
    return tuple(int(s) for s in sorted(pd.unique(variants["image_size_a"].dropna())))


def _levels(nin: pd.DataFrame, axis: str) -> list[Any]:
    if axis not in nin.columns:
        return []
    return [stats.plain(v) for v in pd.unique(nin[axis].dropna())]


def _main_gap_relu(results: Results, nin: pd.DataFrame) -> Any:
    """gap_relu of the GAP head as the grid trains it on its axes: the level most GAP runs have (the exact ReLU
    head is one include row beside a whole axis of them); a tie goes to the grid file's setting. None without one."""
    if "gap_relu" not in nin.columns:
        return None
    levels = nin.loc[nin["head"] == "gap", "gap_relu"].dropna().map(bool)
    if levels.empty:
        return None
    counts = levels.value_counts()
    top = counts[counts == counts.max()].index.tolist()
    if len(top) == 1:
        return bool(top[0])
    settings = results.spec.get("settings")
    setting = settings.get("gap_relu") if isinstance(settings, dict) else None
    return setting if isinstance(setting, bool) else False
