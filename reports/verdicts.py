"""The NiN paper's and the seeds' claims, each judged on this grid's numbers: supported, contradicted, inconclusive.

    frame = verdicts(results, stats.effects(results))   # one row per claim; frame["sentence"] says it in words

A claim about a measured difference is judged on the paired effects (stats.effects): *supported* when its 95%
interval excludes zero in the claimed direction, *contradicted* when it excludes zero the other way, otherwise
*inconclusive*, and then the row says how many seeds would resolve the observed mean at the observed spread. A claim
about parameter counts is judged on the exact ratio GAP/other at matched settings (a count has no interval).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from reports import stats
from reports.load import Results, labels
from reports.tables import PAPER_LABELS

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
NOT_TESTED = "not tested by this grid"
CSV_COLUMNS = ("claim", "verdict", "mean", "ci_low", "ci_high", "n_pairs", "seeds_needed")
COLUMNS = ("key", *CSV_COLUMNS, "kind", "detail", "note", "sentence")
# Below this |mean| (accuracy units; a test set's resolution is 1/n_test, far coarser) the observed mean is zero.
ZERO = 1e-9
OTHER_HEADS = {"fc": "FC", "alexnet": "AlexNet"}
NO_CANVAS = "localisation not measured (no canvas)"


def verdicts(results: Results, effects: pd.DataFrame) -> pd.DataFrame:
    """One row per claim (COLUMNS): the verdict, the number it rests on, its interval, pairs and seeds needed."""
    nin = results.runs[results.runs["model"] == "nin"]
    context = _Context(results, nin, effects, _main_gap_relu(results, nin))
    rows: list[dict[str, Any]] = []
    for head, name in OTHER_HEADS.items():
        rows.append(_params_claim(context, head, name))
    for head, name in OTHER_HEADS.items():
        rows.append(context.effect(f"gap_overfitting_vs_{head}", f"GAP reduces overfitting vs the {name} head",
                                   "head", "gap", head, "gap_acc", -1))  # fmt: skip
    for head, name in OTHER_HEADS.items():
        rows.append(context.effect(f"gap_accuracy_vs_{head}", f"GAP matches or beats the {name} head in test accuracy",
                                   "head", "gap", head, "test_acc", +1))  # fmt: skip
    cccp = sorted(_levels(nin, "cccp"))
    claim = "cccp 1×1 layers raise test accuracy"
    pairs = [(high, low) for i, low in enumerate(cccp) for high in cccp[i + 1 :]]
    for high, low in pairs:
        key = f"cccp_{high}_vs_{low}_accuracy"
        rows.append(context.effect(key, f"{claim} (cccp {high} vs {low})", "cccp", high, low, "test_acc", +1))
    if not pairs:
        rows.append(context.effect("cccp_accuracy", claim, "cccp", None, None, "test_acc", +1))
    rows.append(context.effect("dropout_overfitting", "dropout reduces overfitting", "dropout", True, False,
                               "gap_acc", -1))  # fmt: skip
    rows.append(context.effect("dropout_accuracy", "dropout raises test accuracy", "dropout", True, False,
                               "test_acc", +1))  # fmt: skip
    for head, name in OTHER_HEADS.items():
        rows.append(context.effect(f"gap_localisation_vs_{head}", f"GAP's class maps localise better than the "
                                   f"{name} head's", "head", "gap", head, "loc_pointing", +1))  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["seeds_needed"] = frame["seeds_needed"].astype("Int64")
    frame["n_pairs"] = frame["n_pairs"].astype("Int64")
    return frame


def judge(mean: float, sd: float, n: int, ci_low: float, ci_high: float, direction: int,
          pairs_per_seed: float) -> tuple[str, int | None, str]:  # fmt: skip
    """The rule for a paired difference whose claimed sign is `direction` (+1 or −1): (verdict, seeds needed or
    None, the reason in a few words)."""
    if n < stats.MIN_INTERVAL_N:
        return INCONCLUSIVE, None, stats.FEW
    if ci_low > 0 or ci_high < 0:
        return (SUPPORTED if (ci_low > 0) == (direction > 0) else CONTRADICTED), None, ""
    if abs(mean) <= ZERO:
        return INCONCLUSIVE, None, "the observed mean is zero"
    seeds = seeds_needed(mean, sd, pairs_per_seed)
    return INCONCLUSIVE, seeds, f"about {seeds} seeds would resolve a mean this size at this spread"


def seeds_needed(mean: float, sd: float, pairs_per_seed: float) -> int:
    """Seeds whose pairs make the t-interval of a mean this size at this spread exclude zero: the smallest
    n ≥ MIN_INTERVAL_N with t(0.975, n−1)·sd/√n < |mean|, over the pairs each seed contributes."""
    # t(0.975, n−1) > z(0.975) for every n, so no n below (z·sd/|mean|)² can qualify: start the search there.
    start = math.floor((1.959963984540054 * sd / abs(mean)) ** 2) if sd > 0 else 0
    n = max(stats.MIN_INTERVAL_N, start)
    while stats.t_quantile(n) * sd / math.sqrt(n) >= abs(mean):
        n += 1
    return math.ceil(n / pairs_per_seed)


def exact_head_note(results: Results) -> str | None:
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
    shown = ", ".join(pd.unique(names[rows.index]))
    text = (f"The seeds' exact GAP head ({shown} on the class maps), reported apart from the GAP "
            f"lines above: stalled in {int(ok['stalled'].sum())} of {stats.count(len(rows), 'run')}")  # fmt: skip
    if len(rows) > len(ok):
        text += f" ({len(rows) - len(ok)} not ok)"
    if trained.empty:
        return text + "; it never trained."
    interval = stats.t_interval(trained["test_acc"], stats.metric_range("test_acc"))
    text += f"; when it trained, test accuracy {100 * interval['mean']:.1f}%"
    if interval["n"] < stats.MIN_INTERVAL_N:
        return text + f" ({stats.count(interval['n'], 'run')}, {stats.FEW}: no interval)."
    return text + (f" (95% CI {100 * interval['ci_low']:.1f} to {100 * interval['ci_high']:.1f}%, "
                   f"{interval['n']} runs).")  # fmt: skip


def csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns report/verdicts.csv holds."""
    return frame[list(CSV_COLUMNS)]


# ---- internals ----------------------------------------------------------------------------------------------------
class _Context:
    def __init__(self, results: Results, nin: pd.DataFrame, effects: pd.DataFrame, main_gap_relu: Any) -> None:
        self.results, self.nin, self.effects, self.main_gap_relu = results, nin, effects, main_gap_relu

    def missing(self, axis: str, a: Any, b: Any) -> str:
        """Why the grid cannot test a contrast of these levels ('' when it can)."""
        present = {stats.level_text(axis, v) for v in _levels(self.nin, axis)}
        absent = [level for level in (a, b) if level is None or stats.level_text(axis, level) not in present]
        if not absent:
            return ""
        if axis not in self.nin.columns or len(present) < 2:
            return f"the grid has no {axis} axis"
        return f"no {axis} {' or '.join(stats.level_text(axis, v) for v in absent if v is not None)} among the NiN runs"

    def subset(self, axis: str) -> str:
        """The effects subset GAP lines use: the GAP head as the grid trains it on its axes."""
        if axis != "head" or self.main_gap_relu is None:
            return ""
        return f"gap_relu={stats.level_text('gap_relu', self.main_gap_relu)}"

    def effect(self, key: str, claim: str, axis: str, a: Any, b: Any, metric: str, direction: int) -> dict:
        row = {"key": key, "claim": claim, "kind": "difference", "mean": math.nan, "ci_low": math.nan,
               "ci_high": math.nan, "n_pairs": None, "seeds_needed": None}  # fmt: skip
        what = stats.METRIC_NAMES.get(metric, metric)
        if metric not in stats.effect_metrics(self.results.runs):
            note = NO_CANVAS if metric == "loc_pointing" else f"{what} not measured"
            return _finish(row, NOT_TESTED, note)
        missing = self.missing(axis, a, b)
        if missing:
            return _finish(row, NOT_TESTED, missing)
        found = _effect_row(self.effects, axis, a, b, metric, self.subset(axis))
        if found is None:
            row["n_pairs"] = 0
            return _finish(row, INCONCLUSIVE, f"{stats.FEW}: no matched pairs")
        mean, low, high, n, sd, seeds = found
        row.update(mean=mean, ci_low=low, ci_high=high, n_pairs=n)
        verdict, needed, reason = judge(mean, sd, n, low, high, direction, n / seeds if seeds else 1.0)
        row["seeds_needed"] = needed
        number = f"{what} {stats.difference_text(mean, low, high, n)}"
        if needed is not None:
            reason += f" (this grid has {_seed_count(self.results)})"
        return _finish(row, verdict, reason, number)


def _finish(row: dict, verdict: str, note: str, number: str = "") -> dict:
    row.update(verdict=verdict, note=note, detail=number)
    details = "; ".join(part for part in (number, note) if part)
    row["sentence"] = f"{row['claim']}: {verdict}" + (f" — {details}." if details else ".")
    return row


def _params_claim(context: _Context, head: str, name: str) -> dict:
    key, claim = f"gap_params_vs_{head}", f"GAP has fewer parameters than the {name} head"
    row = {"key": key, "claim": claim, "kind": "ratio", "mean": math.nan, "ci_low": math.nan, "ci_high": math.nan,
           "n_pairs": None, "seeds_needed": None}  # fmt: skip
    missing = context.missing("head", "gap", head)
    if missing:
        return _finish(row, NOT_TESTED, missing)
    subset = context.subset("head")
    contrasts = [c for c in stats.matched_pairs(context.results, "head", "gap", head) if c.subset == subset]
    pairs = contrasts[0].pairs if contrasts else pd.DataFrame()
    pairs = pairs[pairs["params_a"].notna() & pairs["params_b"].notna()] if len(pairs) else pairs
    if pairs.empty:
        row["n_pairs"] = 0
        return _finish(row, INCONCLUSIVE, "no matched pair of runs with a parameter count")
    variants = pairs.drop_duplicates(["group_id_a", "group_id_b"])
    ratios = variants["params_a"] / variants["params_b"]
    row.update(mean=float(ratios.mean()), n_pairs=len(variants))
    if (ratios < 1).all():
        verdict = SUPPORTED
    elif (ratios > 1).all():
        verdict = CONTRADICTED
    else:
        verdict = INCONCLUSIVE
    by_setting = _ratio_text(variants, ratios)
    size = _image_size(variants)
    if verdict == INCONCLUSIVE:
        relation = f"the {name} head is larger than GAP in some settings and smaller in others"
    else:
        relation = f"the {name} head is {'larger' if verdict == SUPPORTED else 'smaller'} than GAP"
    number = f"params GAP/{name} = {by_setting}"
    return _finish(row, verdict, f"{relation} at {size}", number)


def _ratio_text(variants: pd.DataFrame, ratios: pd.Series) -> str:
    """'0.45 (61,370 vs 136,010)', or one such part per setting that changes the ratio ('... at cccp 0; ...')."""
    groups = variants.assign(_ratio=ratios.to_numpy()).groupby(["params_a", "params_b"], sort=False)
    # Settings that name a distinct ratio: they vary across the pairs and are constant within each ratio.
    names = [c[:-2] for c in variants.columns if c.endswith("_a") and c[:-2] in _DESCRIBE]
    names = [c for c in names if variants[f"{c}_a"].nunique() > 1
             and all(g[f"{c}_a"].nunique() == 1 for _, g in groups)]  # fmt: skip
    parts = []
    for (params_a, params_b), group in groups:
        where = ", ".join(f"{c} {stats.level_text(c, group[f'{c}_a'].iloc[0])}" for c in names)
        part = f"{params_a / params_b:.2f} ({params_a:,.0f} vs {params_b:,.0f}"
        parts.append(part + (f" at {where})" if where else ")"))
    return "; ".join(parts)


_DESCRIBE = ("cccp", "dropout", "width", "image_size", "arch", "num_classes", "in_channels")


def _image_size(variants: pd.DataFrame) -> str:
    if "image_size_a" not in variants:
        return "this input size"
    sizes = sorted(pd.unique(variants["image_size_a"].dropna()))
    return f"{'/'.join(str(s) for s in sizes)} px input" if sizes else "this input size"


def _effect_row(effects: pd.DataFrame, axis: str, a: Any, b: Any, metric: str,
                subset: str) -> tuple[float, float, float, int, float, int] | None:  # fmt: skip
    """(mean, ci_low, ci_high, n_pairs, sd, seeds) of level a minus level b, whichever order effects holds."""
    rows = effects[(effects["axis"] == axis) & (effects["metric"] == metric)]
    text_a, text_b = (rows[c].map(lambda v: stats.level_text(axis, v)) for c in ("level_a", "level_b"))
    la, lb = stats.level_text(axis, a), stats.level_text(axis, b)
    forward, backward = rows[(text_a == la) & (text_b == lb)], rows[(text_a == lb) & (text_b == la)]
    for candidates, sign in ((forward, 1), (backward, -1)):
        chosen = candidates[candidates["subset"].fillna("") == subset]
        if chosen.empty and subset:  # a grid without the not-applicable split (older results: no gap_relu)
            chosen = candidates[candidates["subset"].fillna("") == ""]
        if chosen.empty:
            continue
        r = chosen.iloc[0]
        low, high = (r.ci_low, r.ci_high) if sign > 0 else (-r.ci_high, -r.ci_low)
        return sign * r.mean_diff, low, high, int(r.n_pairs), r.std_diff, int(r.n_seeds)
    return None


def _levels(nin: pd.DataFrame, axis: str) -> list[Any]:
    if axis not in nin.columns:
        return []
    return [stats.plain(v) for v in pd.unique(nin[axis].dropna())]


def _seed_count(results: Results) -> str:
    return stats.count(int(results.runs["seed"].nunique()), "seed")


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
