"""Per-variant summaries across seeds and paired effects of each axis, with Student-t 95% intervals.

Which runs enter the statistics: every run the grid launched that ended (status ok or diverged), whatever its
training did. A run that stalled, under-fit or diverged is what the method gave in that seed: it stays in its pairs
with its outcome (intention to treat; docs/DECISIONS.md, "Failed training is an outcome"). A run that failed for a
reason not the method's (an exception, an OOM) is missing data: its seed leaves the contrasts it belongs to, and the
line says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from judge.load import ANALYSED_STATUSES, FAILED_TRAINING, METRIC_COLUMNS, MISSING, Results, config_columns, varying

CONFIDENCE = 0.95
# No interval from fewer values: with 1 degree of freedom t(0.975) is 12.7 and the interval says nothing (it once
# spanned −249 to +122 points and flattened every other effect in the plot). Tables leave it empty and say so.
MIN_INTERVAL_N = 3
FEW = f"n < {MIN_INTERVAL_N}"
EFFECT_METRICS = ("test_acc", "gap_acc")
# Outcomes compared like EFFECT_METRICS once some run has measured them (class-map pointing game on a canvas).
OPTIONAL_EFFECT_METRICS = ("loc_pointing",)
# Training time to the criterion (judge.load.time_to_fit), compared like them once some run has epochs to read.
TIME_METRICS = ("epochs_to_fit", "log_seconds_to_fit")
METHOD = (
    "paired differences (level A minus level B) over runs equal in every other varying setting and the seed; the "
    "seed is the unit: each seed's pairs are averaged first, then mean ± t(0.975, n_seeds−1)·sd/√n_seeds over seeds "
    "(Student t via scipy.stats), ending where a difference can (±100 points of accuracy); a seed without a pair at "
    "every setting of the contrast (a run missing: failed for a reason not the method's) is left out of it; every "
    "launched run that ended is in, stalled, under-fitted or diverged alike; 95% intervals unadjusted for the number "
    "of claims (the verdicts read adjusted ones)"
)
SUMMARY_METHOD = (
    "mean ± t(0.975, n−1)·sd/√n over seeds (Student t via scipy.stats), ending where the metric does (accuracy at 0 "
    "and 100%); every launched run that ended (stalled, under-fitted and diverged ones too)"
)
# The values each outcome can take. A t interval of accuracies near 100% would otherwise end at 101%: a bound past a
# metric's range is set to the range's end (the mean and sd are untouched). gap_loss is unbounded.
METRIC_RANGES = {"test_acc": (0.0, 1.0), "train_acc": (0.0, 1.0), "gap_acc": (-1.0, 1.0), "fit": (0.0, 1.0),
                 "loc_pointing": (0.0, 1.0), "loc_energy": (0.0, 1.0)}  # fmt: skip


def metric_range(metric: str, difference: bool = False) -> tuple[float, float] | None:
    """The range of a metric, or of a difference of two of its values; None where it has none."""
    bounds = METRIC_RANGES.get(metric)
    if bounds is None or not difference:
        return bounds
    low, high = bounds
    return (low - high, high - low)


def t_quantile(n: int, confidence: float = CONFIDENCE) -> float:
    """t((1 + confidence)/2, n − 1): the half-width of the interval of a mean of n values is this × sd / √n."""
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1))


def t_interval(values: Any, bounds: tuple[float, float] | None = None,
               confidence: float = CONFIDENCE) -> dict[str, float]:  # fmt: skip
    """Mean, sample sd (ddof 1), n and the two-sided t interval at `confidence`, cut at `bounds` (the metric's
    range); sd is NaN below 2 values, the interval below MIN_INTERVAL_N."""
    values = np.asarray(pd.Series(values, dtype="float64").dropna(), dtype="float64")
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    sd = float(values.std(ddof=1)) if n >= 2 else math.nan
    if n < MIN_INTERVAL_N:
        return {"mean": mean, "std": sd, "n": n, "ci_low": math.nan, "ci_high": math.nan}
    half = t_quantile(n, confidence) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"mean": mean, "std": sd, "n": n, "ci_low": low, "ci_high": high}


def ci_note(n: int) -> str:
    """What a table says where it leaves an interval empty."""
    return FEW if n < MIN_INTERVAL_N else ""


# A variant's outcomes split when the largest gap between its sorted seeds' values exceeds SPLIT_MADS robust sds
# (1.4826·MAD) and SPLIT_FLOOR: two branches of training, one mean ± sd describing neither. Only a display flag (median
# and interquartile mean shown beside mean ± sd): it changes no interval and no verdict.
SPLIT_MADS = 3.0
SPLIT_FLOOR = 0.10  # accuracy units: seed noise of a fitted variant is a few points at most
SPLIT_METRIC = "test_acc"


def split_outcomes(values: Any) -> bool:
    """Whether these seeds' values fall into two groups (SPLIT_MADS, SPLIT_FLOOR); False below MIN_INTERVAL_N."""
    x = np.sort(np.asarray(pd.Series(values, dtype="float64").dropna(), dtype="float64"))
    if len(x) < MIN_INTERVAL_N:
        return False
    gap = float(np.diff(x).max())
    mad = 1.4826 * float(np.median(np.abs(x - np.median(x))))
    return gap > max(SPLIT_MADS * mad, SPLIT_FLOOR)


def interquartile_mean(values: Any) -> float:
    """The mean of the middle half (scipy.stats.trim_mean at 0.25): robust to one seed on another branch."""
    x = np.asarray(pd.Series(values, dtype="float64").dropna(), dtype="float64")
    return float(stats.trim_mean(x, 0.25)) if len(x) else math.nan


def used_in_statistics(runs: pd.DataFrame) -> pd.Series:
    return runs["status"].isin(ANALYSED_STATUSES)


def summarize(results: Results) -> pd.DataFrame:
    """One row per group_id (a variant across seeds) with mean, sd, n and the t interval of each metric."""
    runs = results.runs
    shown = ["model"] + [c for c in varying(runs, results.config_columns) if c != "model"]
    columns = ["group_id", "label", *shown, "params", "macs", "runs", "n", "stalled", "underfit", "did_not_fit",
               "missing", "not_ok", "ci_note", "split", f"{SPLIT_METRIC}_median", f"{SPLIT_METRIC}_iqm"]  # fmt: skip
    columns += [f"{m}_{s}" for m in METRIC_COLUMNS for s in ("mean", "std", "ci_low", "ci_high")]
    rows = []
    for group_id, group in runs.groupby("group_id", sort=False):
        used = group[used_in_statistics(group)]
        row: dict[str, Any] = {"group_id": group_id, "label": group["label"].iloc[0]}
        row.update({c: group[c].iloc[0] for c in shown})
        row.update({c: group[c].dropna().iloc[0] if group[c].notna().any() else math.nan for c in ("params", "macs")})
        row.update(runs=len(group), n=len(used), stalled=int(group["stalled"].sum()))
        row["underfit"] = int(group["underfit"].sum()) if "underfit" in group else 0
        row["did_not_fit"] = int(group["training"].isin(FAILED_TRAINING).sum())
        row["missing"] = int((group["training"] == MISSING).sum())
        row["split"] = split_outcomes(used[SPLIT_METRIC])
        row[f"{SPLIT_METRIC}_median"] = float(used[SPLIT_METRIC].median()) if len(used) else math.nan
        row[f"{SPLIT_METRIC}_iqm"] = interquartile_mean(used[SPLIT_METRIC])
        row["not_ok"] = int((group["status"] != "ok").sum())
        row["ci_note"] = ci_note(len(used))
        for metric in METRIC_COLUMNS:
            interval = t_interval(used[metric], metric_range(metric))
            row.update({f"{metric}_{s}": interval[s] for s in ("mean", "std", "ci_low", "ci_high")})
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def effect_metrics(runs: pd.DataFrame) -> tuple[str, ...]:
    """EFFECT_METRICS plus each optional outcome that some run has measured."""
    extra = [m for m in (*OPTIONAL_EFFECT_METRICS, *TIME_METRICS) if m in runs.columns and runs[m].notna().any()]
    return (*EFFECT_METRICS, *extra)


def effects(results: Results) -> pd.DataFrame:
    """For every axis that varies across NiN runs and every pair of its levels, the paired differences."""
    nin = results.runs[results.runs["model"] == "nin"]
    axes = varying(nin, results.config_columns)
    metrics = effect_metrics(results.runs)
    rows = []
    for axis in axes:
        levels = _levels(nin[axis], results.level_order(axis))
        for i, a in enumerate(levels):
            for b in levels[i + 1 :]:
                for contrast in matched_pairs(results, axis, a, b):
                    rows.extend(_effect_rows(contrast, metrics))
    # std_diff is the sd of the seed-level differences (the unit of replication), not of single pairs.
    columns = ["axis", "level_a", "level_b", "subset", "metric", "mean_diff", "std_diff", "n_pairs", "n_seeds",
               "seeds_left_out"]  # fmt: skip
    columns += ["ci_low", "ci_high", "ci_note"]
    columns += ["ci_excludes_zero", "unpaired", "pairs_failed_training", "confounded_with", "method"]
    return pd.DataFrame(rows, columns=columns)


# Which runs pair depends only on their configuration, seed and status; their outcomes are read afresh. A caller that
# judges many result sets of one grid's structure (the verdict simulations) pairs once.
_PAIRINGS: dict[tuple, list[Contrast]] = {}
_PAIRINGS_KEPT = 64
PAIR_COLUMNS = ("variant_id", "group_id", "seed", "status", "params", "label", "model", "arch", "width", "image_size",
                "num_classes", "in_channels", "cccp", "dropout")  # fmt: skip
REFRESHED_COLUMNS = ("params", "group_id", "label")  # read afresh too: no part of what pairs runs
OUTCOME_COLUMNS = ("test_acc", "train_acc", "gap_acc", "gap_loss", *OPTIONAL_EFFECT_METRICS, *TIME_METRICS, "stalled",
                   "underfit", "fit", "training")  # fmt: skip


def matched_pairs(results: Results, axis: str, a: Any, b: Any) -> list[Contrast]:
    """The NiN runs at level a and level b of an axis, paired as effects pairs them (ok runs equal in every other
    varying setting and the seed), one Contrast per subset; pairs with a failed training included and counted."""
    config, structure, ids = _structure(results)
    key = (structure, axis, repr(a), repr(b))
    if key not in _PAIRINGS:
        nin = results.runs[results.runs["model"] == "nin"]
        axes = varying(nin, config)
        found = _contrasts(nin, axis, a, b, [c for c in axes if c != axis]) if axis in axes else []
        if len(_PAIRINGS) >= _PAIRINGS_KEPT:
            _PAIRINGS.pop(next(iter(_PAIRINGS)))
        _PAIRINGS[key] = found
    return [contrast.with_outcomes(results.runs, ids) for contrast in _PAIRINGS[key]]


def _structure(results: Results) -> tuple[list[str], tuple, pd.Index]:
    """The configuration columns of the runs, a fingerprint of what pairs them, and their ids: computed once per
    result set."""
    known = results.derived.get("pairing_structure")
    if known is not None and known[0] is results.runs:  # a result set whose runs were replaced is framed afresh
        return known[1:]
    runs = results.runs
    config = config_columns(runs)
    nin = runs[runs["model"] == "nin"]
    frame = nin[[*config, "seed", "status", "variant_id"]].astype("string").fillna("<null>")
    fingerprint = (tuple(frame.columns), int(pd.util.hash_pandas_object(frame, index=False).sum()))
    ids = pd.Index(runs["variant_id"])
    results.derived["pairing_structure"] = (runs, config, fingerprint, ids)
    return config, fingerprint, ids


@dataclass(frozen=True)
class Contrast:
    """Level a vs level b of an axis over one subset of runs: the pairs (columns <name>_a / <name>_b) and counts."""

    axis: str
    a: Any
    b: Any
    subset: str
    pairs: pd.DataFrame
    unpaired: int
    confounded: list[str]
    planned_settings: int = 0  # the settings the grid launched runs at on both sides, missing ones included
    missing_seeds: tuple[Any, ...] = ()  # seeds with runs in the contrast but no pair at all: a run is missing

    @property
    def stalled(self) -> pd.Series:
        return self.pairs["stalled_a"].astype(bool) | self.pairs["stalled_b"].astype(bool)

    @property
    def failed_training(self) -> pd.Series:
        """Pairs with a run whose training failed (stalled, under-fitted, diverged): in every verdict, out of the
        sensitivity analysis."""
        return self.pairs["training_a"].isin(FAILED_TRAINING) | self.pairs["training_b"].isin(FAILED_TRAINING)

    def failed_runs(self) -> frozenset[str]:
        """The run ids whose training failed, among this contrast's pairs."""
        pairs = self.pairs
        return frozenset(pairs.loc[pairs["training_a"].isin(FAILED_TRAINING), "variant_id_a"]) | frozenset(
            pairs.loc[pairs["training_b"].isin(FAILED_TRAINING), "variant_id_b"])  # fmt: skip

    def with_outcomes(self, runs: pd.DataFrame, ids: pd.Index) -> Contrast:
        """The same pairs with each run's outcomes (OUTCOME_COLUMNS) read from `runs` (whose variant ids are `ids`)."""
        where = {side: ids.get_indexer(self.pairs[f"variant_id_{side}"]) for side in ("a", "b")}
        fresh = {f"{column}_{side}": runs[column].to_numpy()[where[side]]
                 for column in (*OUTCOME_COLUMNS, *REFRESHED_COLUMNS) if column in runs.columns
                 for side in ("a", "b")}  # fmt: skip
        pairs = self.pairs.assign(**fresh)
        return replace(self, pairs=pairs)


@dataclass(frozen=True)
class SeedDifferences:
    """A contrast at the seed level, the unit of replication: each seed's paired differences averaged over the
    contrast's settings (the other axes' levels)."""

    values: pd.Series  # seed → mean difference (level a minus level b) over the settings
    n_pairs: int  # pairs inside the seeds kept
    seeds_left_out: tuple[Any, ...]  # seeds without a usable pair at every setting
    settings: int  # settings the contrast averages over


def seed_differences(contrast: Contrast, metric: str, leave_out: frozenset[str] = frozenset()) -> SeedDifferences:
    """The contrast's seed-level differences of `metric` over every pair, failed training included. Pairs with a run
    in `leave_out` (run ids: the sensitivity analysis) are not used; a seed that then lacks a pair at some setting is
    left out whole, so that every seed averages the same settings and the seeds stay exchangeable
    (docs/DECISIONS.md, "Verdicts")."""
    pairs = contrast.pairs
    if pairs.empty:
        return SeedDifferences(pd.Series(dtype="float64"), 0, (), 0)
    a = pd.to_numeric(pairs[f"{metric}_a"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    b = pd.to_numeric(pairs[f"{metric}_b"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    measured = ~(np.isnan(a) | np.isnan(b))
    usable = measured.copy()
    if leave_out:
        usable &= ~pairs["variant_id_a"].isin(leave_out).to_numpy() & ~pairs["variant_id_b"].isin(leave_out).to_numpy()
    seeds = pairs["seed_a"].to_numpy(dtype=object)
    settings = pairs["_setting_a"].to_numpy(dtype=object)
    all_settings = set(settings[measured])
    kept, left_out, values, n_pairs = [], [], [], 0
    for seed in dict.fromkeys(plain(x) for x in seeds[measured]):  # seeds in the order the pairs list them
        mine = usable & (seeds == seed)
        if set(settings[mine]) == all_settings:  # one pair per setting and seed (_pair drops duplicate keys)
            kept.append(seed)
            values.append(float((a[mine] - b[mine]).mean()))
            n_pairs += int(mine.sum())
        else:
            left_out.append(seed)
    order = np.argsort(kept, kind="stable") if kept else []
    series = pd.Series([values[i] for i in order], index=[kept[i] for i in order], dtype="float64")
    return SeedDifferences(series, n_pairs, tuple(left_out), len(all_settings))


def _levels(column: pd.Series, order: list[Any] | None) -> list[Any]:
    present = list(pd.unique(column.dropna()))
    ordered = [level for level in (order or []) if any(same_level(level, p) for p in present)]
    rest = sorted((plain(p) for p in present if not any(same_level(p, o) for o in ordered)), key=_level_key)
    return [plain(level) for level in ordered + rest]


def _level_key(level: Any) -> tuple:
    """Without a grid file's order: on before off, numbers by value, text alphabetically."""
    if isinstance(level, bool):
        return (0, not level, "")
    if isinstance(level, (int, float)):
        return (1, level, "")
    return (2, 0, str(level))


def same_level(a: Any, b: Any) -> bool:
    return type(plain(a)) is type(plain(b)) and plain(a) == plain(b)


def plain(value: Any) -> Any:
    """numpy scalars → Python ones, so that True and 1 stay different levels."""
    return value.item() if isinstance(value, np.generic) else value


def _contrasts(nin: pd.DataFrame, axis: str, a: Any, b: Any, others: list[str]) -> list[Contrast]:
    """Pairs for one axis contrast. A setting that does not apply on one side (null throughout it, e.g. gap_relu
    for the fc head) cannot be matched on: each of its levels on the other side is compared separately."""
    side_a, side_b = nin[nin[axis] == a], nin[nin[axis] == b]
    not_applicable = [c for c in others if side_a[c].isna().all() != side_b[c].isna().all()]
    if not not_applicable:
        return [_pair(nin, axis, a, b, others)]
    rest = [c for c in others if c not in not_applicable]
    out = []
    for column in not_applicable:
        applies = side_b if side_a[column].isna().all() else side_a
        other = side_a if applies is side_b else side_b
        for level in _levels(applies[column], None):
            subset = pd.concat([other, applies[applies[column] == level]])
            out.append(_pair(subset, axis, a, b, rest, subset=f"{column}={level_text(column, level)}"))
    return out


def _pair(nin: pd.DataFrame, axis: str, a: Any, b: Any, others: list[str], subset: str = "") -> Contrast:
    side_a, side_b = nin[nin[axis] == a], nin[nin[axis] == b]
    # A setting with one value on each side that differs between them moves with the axis (image_size with
    # arch): it cannot be matched on, so the effect is stated as confounded with it.
    confounded = [
        c for c in others if _one_value(side_a[c]) and _one_value(side_b[c]) and not _equal_sets(side_a[c], side_b[c])
    ]
    setting_columns = [c for c in others if c not in confounded]
    key_columns = setting_columns + ["seed"]
    ok_a, ok_b = (side[side["status"].isin(ANALYSED_STATUSES)] for side in (side_a, side_b))
    keyed_a, keyed_b = (
        side.assign(_key=_key(side, key_columns), _setting=_key(side, setting_columns)).drop_duplicates("_key")
        for side in (ok_a, ok_b)
    )
    # What pairing, judging and the parameter claims read; the rest (timestamps, tracebacks, versions) stays behind.
    kept = [c for c in side_a.columns if c in {*others, axis, *PAIR_COLUMNS, *OUTCOME_COLUMNS}] + ["_key", "_setting"]
    pairs = keyed_a[kept].merge(keyed_b[kept], on="_key", suffixes=("_a", "_b"))
    unpaired = len(ok_a) + len(ok_b) - 2 * len(pairs)
    planned = set(_key(side_a, setting_columns)) & set(_key(side_b, setting_columns))
    launched = {plain(s) for s in pd.concat([side_a["seed"], side_b["seed"]]).dropna()}
    missing = tuple(sorted(launched - {plain(s) for s in pairs["seed_a"].dropna()}))
    return Contrast(axis, a, b, subset, pairs, unpaired, confounded, len(planned), missing)


def _effect_rows(contrast: Contrast, metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    failed = contrast.failed_training if len(contrast.pairs) else pd.Series(dtype=bool)
    rows = []
    for metric in metrics:
        by_seed = seed_differences(contrast, metric)
        interval = t_interval(by_seed.values, metric_range(metric, difference=True))
        has_ci = interval["n"] >= MIN_INTERVAL_N
        rows.append(
            {
                "axis": contrast.axis,
                "level_a": contrast.a,
                "level_b": contrast.b,
                "subset": contrast.subset,
                "metric": metric,
                "mean_diff": interval["mean"],
                "std_diff": interval["std"],
                "n_pairs": by_seed.n_pairs,
                "n_seeds": interval["n"],
                "seeds_left_out": len(by_seed.seeds_left_out),
                "ci_low": interval["ci_low"],
                "ci_high": interval["ci_high"],
                "ci_note": ci_note(interval["n"]),
                "ci_excludes_zero": bool(interval["ci_low"] > 0 or interval["ci_high"] < 0) if has_ci else None,
                "unpaired": contrast.unpaired,
                "pairs_failed_training": int(failed.sum()),
                "confounded_with": ", ".join(contrast.confounded),
                "method": METHOD,
            }
        )
    return rows


def _one_value(column: pd.Series) -> bool:
    return column.astype("string").fillna("<null>").nunique() == 1


def _equal_sets(x: pd.Series, y: pd.Series) -> bool:
    return set(x.astype("string").fillna("<null>")) == set(y.astype("string").fillna("<null>"))


def _key(runs: pd.DataFrame, columns: list[str]) -> pd.Series:
    if not len(runs):
        return pd.Series([], dtype="string")
    if not columns:  # one setting only: the contrast varies nothing but its axis
        return pd.Series("", index=runs.index, dtype="string")
    parts = [runs[c].astype("string").fillna("<null>") for c in columns]
    key = parts[0]
    for part in parts[1:]:
        key = key + "|" + part
    return key


def level_text(axis: str, level: Any) -> str:
    if isinstance(level, (bool, np.bool_)):
        return "on" if level else "off"
    return str(level)


def pairs(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The effects table as one {metric: row} per axis and pair of levels, in table order.

    Grouped by repr: pandas would merge the level True of one axis with the level 1 of another (True == 1).
    """
    keys = table["axis"] + "|" + table["level_a"].map(repr) + "|" + table["level_b"].map(repr) + "|" + table["subset"]
    return [{row.metric: row for row in group.itertuples()} for _, group in table.groupby(keys, sort=False)]
