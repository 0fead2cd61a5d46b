"""Per-variant summaries across seeds and paired effects of each axis, with Student-t 95% intervals.

Which runs enter the statistics: status "ok" only (the others are listed apart), and of those only runs that left
chance accuracy. A stalled run says the optimiser never got going in that seed, not how the architecture
generalises; one stall in a paired difference (~80 points against ~1) would swamp the effect. Stalls are counted in
every table's `stalled` column instead, so a variant that stalls often is visible as such.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from reports.load import METRIC_COLUMNS, Results, varying

CONFIDENCE = 0.95
EFFECT_METRICS = ("test_acc", "gap_acc")
METHOD = (
    "paired differences (level A minus level B) over runs equal in every other varying setting and the seed; "
    "mean ± t(0.975, n−1)·sd/√n (Student t via scipy.stats); status-ok runs only; pairs with a stalled run left out"
)
SUMMARY_METHOD = "mean ± t(0.975, n−1)·sd/√n over seeds (Student t via scipy.stats); status-ok, non-stalled runs"


def t_interval(values: Any) -> dict[str, float]:
    """Mean, sample sd (ddof 1), n and the two-sided t interval; sd and interval are NaN below two values."""
    values = np.asarray(pd.Series(values, dtype="float64").dropna(), dtype="float64")
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return {"mean": mean, "std": math.nan, "n": n, "ci_low": math.nan, "ci_high": math.nan}
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "std": sd, "n": n, "ci_low": mean - half, "ci_high": mean + half}


def used_in_statistics(runs: pd.DataFrame) -> pd.Series:
    return (runs["status"] == "ok") & ~runs["stalled"].astype(bool)


def summarize(results: Results) -> pd.DataFrame:
    """One row per group_id (a variant across seeds) with mean, sd, n and the t interval of each metric."""
    runs = results.runs
    shown = ["model"] + [c for c in varying(runs, results.config_columns) if c != "model"]
    columns = ["group_id", "label", *shown, "params", "macs", "runs", "n", "stalled", "not_ok"]
    columns += [f"{m}_{s}" for m in METRIC_COLUMNS for s in ("mean", "std", "ci_low", "ci_high")]
    rows = []
    for group_id, group in runs.groupby("group_id", sort=False):
        used = group[used_in_statistics(group)]
        row: dict[str, Any] = {"group_id": group_id, "label": group["label"].iloc[0]}
        row.update({c: group[c].iloc[0] for c in shown})
        row.update({c: group[c].dropna().iloc[0] if group[c].notna().any() else math.nan for c in ("params", "macs")})
        row.update(runs=len(group), n=len(used), stalled=int(group["stalled"].sum()))
        row["not_ok"] = int((group["status"] != "ok").sum())
        for metric in METRIC_COLUMNS:
            interval = t_interval(used[metric])
            row.update({f"{metric}_{s}": interval[s] for s in ("mean", "std", "ci_low", "ci_high")})
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def effects(results: Results) -> pd.DataFrame:
    """For every axis that varies across NiN runs and every pair of its levels, the paired differences."""
    nin = results.runs[results.runs["model"] == "nin"]
    axes = varying(nin, results.config_columns)
    rows = []
    for axis in axes:
        levels = _levels(nin[axis], results.level_order(axis))
        for i, a in enumerate(levels):
            for b in levels[i + 1 :]:
                rows.extend(_compare(nin, axis, a, b, [c for c in axes if c != axis]))
    columns = ["axis", "level_a", "level_b", "subset", "metric", "mean_diff", "std_diff", "n_pairs", "ci_low"]
    columns += ["ci_high"]
    columns += ["ci_excludes_zero", "unpaired", "stalled", "confounded_with", "method"]
    return pd.DataFrame(rows, columns=columns)


def _levels(column: pd.Series, order: list[Any] | None) -> list[Any]:
    present = list(pd.unique(column.dropna()))
    ordered = [level for level in (order or []) if any(_same(level, p) for p in present)]
    rest = sorted((_plain(p) for p in present if not any(_same(p, o) for o in ordered)), key=_level_key)
    return [_plain(level) for level in ordered + rest]


def _level_key(level: Any) -> tuple:
    """Without a grid file's order: on before off, numbers by value, text alphabetically."""
    if isinstance(level, bool):
        return (0, not level, "")
    if isinstance(level, (int, float)):
        return (1, level, "")
    return (2, 0, str(level))


def _same(a: Any, b: Any) -> bool:
    return type(_plain(a)) is type(_plain(b)) and _plain(a) == _plain(b)


def _plain(value: Any) -> Any:
    """numpy scalars → Python ones, so that True and 1 stay different levels."""
    return value.item() if isinstance(value, np.generic) else value


def _compare(nin: pd.DataFrame, axis: str, a: Any, b: Any, others: list[str]) -> list[dict[str, Any]]:
    """Pairs for one axis contrast. A setting that does not apply on one side (null throughout it, e.g. gap_relu
    for the fc head) cannot be matched on: each of its levels on the other side is compared separately."""
    side_a, side_b = nin[nin[axis] == a], nin[nin[axis] == b]
    not_applicable = [c for c in others if side_a[c].isna().all() != side_b[c].isna().all()]
    if not not_applicable:
        return _pair_rows(nin, axis, a, b, others)
    rest = [c for c in others if c not in not_applicable]
    rows = []
    for column in not_applicable:
        applies = side_b if side_a[column].isna().all() else side_a
        other = side_a if applies is side_b else side_b
        for level in _levels(applies[column], None):
            subset = pd.concat([other, applies[applies[column] == level]])
            rows.extend(_pair_rows(subset, axis, a, b, rest, subset=f"{column}={level_text(column, level)}"))
    return rows


def _pair_rows(
    nin: pd.DataFrame, axis: str, a: Any, b: Any, others: list[str], subset: str = ""
) -> list[dict[str, Any]]:
    side_a, side_b = nin[nin[axis] == a], nin[nin[axis] == b]
    # A setting with one value on each side that differs between them moves with the axis (image_size with
    # arch): it cannot be matched on, so the effect is stated as confounded with it.
    confounded = [
        c for c in others if _one_value(side_a[c]) and _one_value(side_b[c]) and not _equal_sets(side_a[c], side_b[c])
    ]
    key_columns = [c for c in others if c not in confounded] + ["seed"]
    ok_a, ok_b = (side[side["status"] == "ok"] for side in (side_a, side_b))
    keyed_a, keyed_b = (side.assign(_key=_key(side, key_columns)).drop_duplicates("_key") for side in (ok_a, ok_b))
    pairs = keyed_a.merge(keyed_b, on="_key", suffixes=("_a", "_b"))
    unpaired = len(ok_a) + len(ok_b) - 2 * len(pairs)
    stalled = pairs["stalled_a"].astype(bool) | pairs["stalled_b"].astype(bool)
    used = pairs[~stalled]
    rows = []
    for metric in EFFECT_METRICS:
        interval = t_interval(used[f"{metric}_a"] - used[f"{metric}_b"])
        excludes = bool(interval["ci_low"] > 0 or interval["ci_high"] < 0) if interval["n"] >= 2 else None
        rows.append(
            {
                "axis": axis,
                "level_a": a,
                "level_b": b,
                "subset": subset,
                "metric": metric,
                "mean_diff": interval["mean"],
                "std_diff": interval["std"],
                "n_pairs": interval["n"],
                "ci_low": interval["ci_low"],
                "ci_high": interval["ci_high"],
                "ci_excludes_zero": excludes,
                "unpaired": unpaired,
                "stalled": int(stalled.sum()),
                "confounded_with": ", ".join(confounded),
                "method": METHOD,
            }
        )
    return rows


def _one_value(column: pd.Series) -> bool:
    return column.astype("string").fillna("<null>").nunique() == 1


def _equal_sets(x: pd.Series, y: pd.Series) -> bool:
    return set(x.astype("string").fillna("<null>")) == set(y.astype("string").fillna("<null>"))


def _key(runs: pd.DataFrame, columns: list[str]) -> pd.Series:
    return (
        runs[columns].astype("string").fillna("<null>").agg("|".join, axis=1)
        if len(runs)
        else pd.Series([], dtype="string")
    )


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


def sentences(table: pd.DataFrame) -> list[str]:
    """One plain sentence per axis and pair of levels, in accuracy points (1 point = 0.01 accuracy)."""
    out = []
    for by_metric in pairs(table):
        row = by_metric["test_acc"]
        head = f"{row.axis} {level_text(row.axis, row.level_a)} vs {level_text(row.axis, row.level_b)}"
        head += f" (where {row.subset}): " if row.subset else ": "
        parts = [_clause("test accuracy", row), _clause("overfitting gap", by_metric["gap_acc"])]
        tail = []
        if row.unpaired:
            tail.append(f"{_count(row.unpaired, 'run')} left out without a pair")
        if row.stalled:
            tail.append(f"{_count(row.stalled, 'pair')} with a stalled run left out")
        if row.confounded_with:
            tail.append(f"confounded with {row.confounded_with}")
        out.append(head + "; ".join(parts) + (f" ({'; '.join(tail)})" if tail else "") + ".")
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _clause(what: str, row: Any) -> str:
    if row.n_pairs == 0:
        return f"{what}: no matched pairs"
    if row.n_pairs == 1:
        return f"{what} {100 * row.mean_diff:+.1f} points (1 pair: too few for an interval)"
    verdict = "the CI excludes zero" if row.ci_excludes_zero else "the CI includes zero"
    return (
        f"{what} {100 * row.mean_diff:+.1f} points (95% CI {100 * row.ci_low:+.1f} to {100 * row.ci_high:+.1f}, "
        f"{_count(row.n_pairs, 'pair')}): {verdict}"
    )
