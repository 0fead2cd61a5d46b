"""A results directory (OUT/<grid>/) → pandas frames: one row per finished run, one row per run and epoch.

Reads only the contract files: spec.yaml, runs/<id>/result.json, runs/<id>/metrics.jsonl. Anything else in a run
directory (temp files of an interrupted write, checkpoints) is never read as a result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from judge import looks
from nin.errors import InputError
from nin.layout import (
    OUTCOME_KEYS,
    RESULT_FILE,
    RUNS_DIR,
    SPEC_FILE,
    TEXT_OUTCOME_KEYS,
    GridDir,
    read_metrics,
    read_result,
    read_tuning,
)

# How each run's training went, decided from training data alone (never the test set), per run:
#   stalled   ok, and its final training accuracy (eval-mode pass, else the last epoch's running one) is within
#             STALL_MARGIN of chance (1/num_classes): the optimiser never got going in that seed;
#   underfit  ok, off chance, but it never fit its training set: under the stopping rule, it hit the cap
#             (stop_reason "cap") or its rule ended it on a plateau below FIT_ACCURACY (a crawl that levelled off is
#             not a fit); otherwise no epoch's training accuracy (metrics.jsonl) reached FIT_ACCURACY (a result
#             without epochs: its final training accuracy);
#   diverged  status "diverged" (a non-finite loss): the method's doing, like a stall;
#   missing   status failed / unreadable (an exception, an OOM, a lost file): not the method's doing;
#   fit       the rest: ok, off chance, the criterion reached.
# Failed training (stalled, underfit, diverged) is an outcome and stays in every pair (docs/DECISIONS.md,
# "Failed training is an outcome"); missing runs are missing data.
STALL_MARGIN = 0.02
FIT_ACCURACY = 0.80  # the training accuracy a fitted run reaches (under the stopping rule too, at its last epoch)
FIT, STALLED, UNDERFIT, DIVERGED, MISSING = "fit", "stalled", "underfit", "diverged", "missing"
FAILED_TRAINING = (STALLED, UNDERFIT, DIVERGED)
ANALYSED_STATUSES = ("ok", "diverged")  # the runs every verdict reads: the grid launched them and they ended
CRITERION = "criterion"  # result.json's stop_reason of a run that met the stopping rule
# The stop_reasons of a run trained under the stopping rule (its criterion met, or its epoch cap reached first); any
# other (a plain epoch budget, null) leaves the criterion to FIT_ACCURACY.
RULE_ENDINGS = (CRITERION, "cap")

# What a run measured or how it ran (nin.layout owns the list). Every other scalar key of result.json is
# configuration (a Variant field): reading the configuration from the data keeps reports independent of the training
# code's version.
NOT_CONFIG = (*OUTCOME_KEYS, "seed", "stalled", "underfit", "label", "training", "fit", "imputed", "epochs_to_fit",
              "log_seconds_to_fit", "stop_reason", "lr_drops", "lr_drop_epochs", "train_images")
METRIC_COLUMNS = ("test_acc", "gap_acc", "gap_loss")


@dataclass
class Results:
    """Everything a report is made of. `runs` holds every result.json (ok or not); `epochs` ok and not-ok alike."""

    grid_dir: Path
    name: str
    expected: list[str] | None  # every run id spec.yaml lists; None without a spec.yaml
    spec: dict[str, Any]
    runs: pd.DataFrame
    epochs: pd.DataFrame
    unfinished: list[str] = field(default_factory=list)  # run directories without a result.json yet
    notes: list[str] = field(default_factory=list)  # anything odd that was skipped, shown on the page
    sequence: looks.Sequence | None = None  # looks.json of a grid grown by `run --until-resolved`; None otherwise
    # What is derived from `runs` once per result set (judge.stats' pairing structure), beside the frame it is of.
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "ok"]

    @property
    def not_ok(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] != "ok"]

    @property
    def config_columns(self) -> list[str]:
        return config_columns(self.runs)

    def level_order(self, axis: str) -> list[Any] | None:
        """The grid file's order of an axis's levels (spec.yaml `axes`), if it lists that axis."""
        axes = self.spec.get("axes")
        levels = axes.get(axis) if isinstance(axes, dict) else None
        return list(levels) if isinstance(levels, list) else None

    def done_line(self) -> str:
        counts = self.runs["status"].value_counts().to_dict() if len(self.runs) else {}
        breakdown = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        if self.expected is None:
            head = f"{len(self.runs)} runs done (no spec.yaml, so the grid's size is unknown)"
        else:
            head = f"{len(self.runs)} of {len(self.expected)} variants done"  # runs holds listed ids only
        return head + (f": {breakdown}" if breakdown else "")


def load_results(grid_dir: str | Path) -> Results:
    grid_dir = Path(grid_dir)
    if not grid_dir.is_dir():
        raise InputError(
            f"{grid_dir}: no such results directory (pass OUT/<grid name>, the directory 'nin-ablate run' writes)"
        )
    layout = GridDir(grid_dir)
    spec_path = layout.spec_path
    result_paths = [layout.result_path(run_id) for run_id in layout.finished_ids()]
    if not spec_path.is_file() and not result_paths:
        raise InputError(
            f"{grid_dir}: not a results directory: it has no {SPEC_FILE} and no {RUNS_DIR}/*/{RESULT_FILE} "
            f"(pass OUT/<grid name>, the directory 'nin-ablate run' writes)"
        )
    spec = _read_spec(spec_path) if spec_path.is_file() else {}
    expected = spec.get("variants") if spec_path.is_file() else None
    if expected is not None and not (isinstance(expected, list) and all(isinstance(v, str) for v in expected)):
        raise InputError(f"{spec_path}: 'variants' must be a list of run ids (rewrite it with 'nin-ablate run')")
    name = spec.get("name") if isinstance(spec.get("name"), str) else grid_dir.resolve().name

    notes: list[str] = []
    if expected is not None:
        # Runs of an earlier version of the grid (their config, hence their id, changed) are listed, never mixed in.
        stale = [run_id for run_id in layout.stale_runs(expected) if layout.is_finished(run_id)]
        if stale:
            shown = ", ".join(stale[:5]) + (" ..." if len(stale) > 5 else "")
            notes.append(f"{len(stale)} finished run(s) are not in this grid's spec.yaml (an earlier version of "
                         f"the grid) and are left out of every table: {shown}")  # fmt: skip
        result_paths = [p for p in result_paths if p.parent.name in set(expected)]
    notes += _tuning_notes(layout)
    records = [_read_result(path, notes) for path in result_paths]
    runs = runs_frame(records)
    finished = {path.parent.name for path in result_paths}
    unfinished = [
        run_id for run_id in layout.run_ids() if run_id not in finished and (expected is None or run_id in expected)
    ]
    epochs = _epochs_frame(layout, runs, notes)
    if len(runs):
        flag_training(runs, time_to_fit(runs, epochs))
    sequence = _read_sequence(layout, notes)
    return Results(grid_dir, name, expected, spec, runs, epochs, unfinished, notes, sequence)


def _read_sequence(layout: GridDir, notes: list[str]) -> looks.Sequence | None:
    """looks.json, when `run --until-resolved` grew this grid and took at least one look; a file that cannot be read
    is a note, and the verdicts fall back to the fixed rule."""
    if not layout.looks_path.is_file():
        return None
    try:
        record = looks.read(layout.looks_path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        notes.append(f"{layout.looks_path}: unreadable ({exc}); the verdicts use the fixed rule")
        return None
    return record if record.looks else None


def _tuning_notes(layout: GridDir) -> list[str]:
    """A grid with `tune:`: each arm whose pick is still the smallest or largest candidate tried (tuning.json, written
    by the runner): its best value may lie beyond what was tried."""
    try:
        record = read_tuning(layout.tuning_path)
        key = record["tune"]["key"]
        return [
            f"tuned {key} of {arm['arm_id']} is {arm['pick']:g}, still at the {arm['at_edge']} edge of its candidates "
            f"({', '.join(f'{v:g}' for v in arm['candidates'])}): {arm.get('edge_note') or 'not widened further'}"
            for arm in record["arms"]
            if arm.get("at_edge") and arm.get("pick") is not None
        ]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return [f"{layout.tuning_path}: unreadable ({exc}); the picks' edges are not shown"]


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the resolved grid: {str(exc).splitlines()[0]}") from None
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise InputError(f"{path}: the resolved grid must be a YAML mapping (rewrite it with 'nin-ablate run')")
    return spec


def _read_result(path: Path, notes: list[str]) -> dict[str, Any]:
    run_id = path.parent.name
    try:
        record = read_result(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        # Listed among the runs that are not ok rather than stopping the whole report.
        notes.append(f"{path}: unreadable result ({exc}); listed as status 'unreadable'")
        return {"variant_id": run_id, "group_id": run_id, "status": "unreadable", "error": str(exc)}
    record.setdefault("variant_id", run_id)
    record.setdefault("group_id", record["variant_id"])
    record.setdefault("status", "unknown")
    versions = record.pop("versions", None)
    if isinstance(versions, dict):
        for key, value in versions.items():
            record[f"version_{key}"] = value
    drops = record.get("lr_drop_epochs")
    if isinstance(drops, list):  # one text cell in results.csv: the epochs after which the rate dropped
        record["lr_drop_epochs"] = " ".join(str(epoch) for epoch in drops)
    tuned = record.pop("tuned", None)
    if isinstance(tuned, dict):
        # A value picked on validation for the run's arm (a grid with `tune:`) is part of the arm's treatment: as
        # tuned_<key> it is shown, but never an axis, a pairing key or a label part (GAP and FC pair at their picks).
        for key, value in tuned.items():
            record[f"tuned_{key}"] = record.pop(key, value)
    return record


def runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    runs = pd.DataFrame.from_records(records)
    # Every column the report reads exists, if only as nulls (an empty grid, an older or unreadable result).
    for column in (*OUTCOME_KEYS, "num_classes", "seed", "model", "head", "cccp", "dropout"):
        if column not in runs.columns and column != "versions":
            runs[column] = None
    numeric = [c for c in runs.columns if c in OUTCOME_KEYS and c not in _TEXT_OUTCOMES]
    for column in numeric:
        runs[column] = pd.to_numeric(runs[column], errors="coerce").astype("float64")
    # Configuration as nullable types: cccp stays an integer beside the AlexNet row's null.
    config = config_columns(runs)
    if config:
        runs[config] = runs[config].convert_dtypes()
    runs["seed"] = pd.to_numeric(runs["seed"], errors="coerce").astype("Int64")
    # Results from before the AlexNet reference existed have no model key; an unreadable one has no model at all.
    runs["model"] = runs["model"].where(runs["status"] == "unreadable", runs["model"].fillna("nin"))
    flag_training(runs)
    runs["label"] = labels(runs)
    return runs.sort_values(["label", "seed", "variant_id"], na_position="last").reset_index(drop=True)


_TEXT_OUTCOMES = {*TEXT_OUTCOME_KEYS, "versions", "stop_reason", "lr_drop_epochs"}


def flag_training(runs: pd.DataFrame, reached: pd.Series | None = None) -> pd.DataFrame:
    """Set each run's `training` (FIT, STALLED, UNDERFIT, DIVERGED, MISSING) and the booleans stalled, underfit and
    fit, from training data only; `reached` (per row: the criterion met, from metrics.jsonl) where known. A diverged
    run's missing outcomes become chance (test and train accuracy 1/num_classes, gap 0; `imputed` says so): a net
    whose loss went non-finite predicts no better than chance, and it stays in its pairs as what the method gave."""
    chance = 1.0 / pd.to_numeric(runs["num_classes"], errors="coerce").astype("float64")
    ok = (runs["status"] == "ok").to_numpy()
    final = pd.to_numeric(runs["train_acc"], errors="coerce").astype("float64")
    if "running_train_acc" in runs:
        final = final.fillna(pd.to_numeric(runs["running_train_acc"], errors="coerce").astype("float64"))
    stalled = ok & (final <= chance + STALL_MARGIN).to_numpy()
    if reached is None:
        reached = final >= FIT_ACCURACY
    met = reached.reindex(runs.index).astype("boolean").fillna(False).to_numpy(dtype=bool)
    if "stop_reason" in runs:  # the stopping rule's own record, where the run has one
        reason = runs["stop_reason"].astype("object")
        recorded = reason.isin(RULE_ENDINGS).to_numpy(dtype=bool)
        fitted = (reason == CRITERION).to_numpy(dtype=bool) & (final >= FIT_ACCURACY).to_numpy(dtype=bool)
        met = np.where(recorded, fitted, met)
    diverged = (runs["status"] == "diverged").to_numpy()
    training = np.select([stalled, ok & ~met, ok, diverged], [STALLED, UNDERFIT, FIT, DIVERGED], MISSING)
    runs["training"] = training
    runs["stalled"] = stalled
    runs["underfit"] = training == UNDERFIT
    runs["fit"] = training == FIT
    # Flagging twice (runs_frame, then load_results with the epochs' criterion) keeps what the first call imputed.
    before = runs["imputed"].fillna(False).to_numpy(dtype=bool) if "imputed" in runs else False
    imputed = diverged & (runs["test_acc"].isna().to_numpy() | before)
    runs["imputed"] = imputed
    if imputed.any():
        runs.loc[imputed, "test_acc"] = chance[imputed]
        runs.loc[imputed & runs["train_acc"].isna().to_numpy(), "train_acc"] = chance[imputed]
        runs.loc[imputed & runs["gap_acc"].isna().to_numpy(), "gap_acc"] = 0.0
    return runs


def time_to_fit(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.Series:
    """Set epochs_to_fit and log_seconds_to_fit (natural log of wall seconds) of each analysed run, the training time
    to the criterion; returns whether its epochs (metrics.jsonl) reached FIT_ACCURACY. Where result.json records
    stop_reason, the stopping rule's own count is read: epochs_done and train_seconds. Otherwise the first epoch whose
    training accuracy (the eval-mode pass where the epoch made one, else the running one) reached FIT_ACCURACY, and
    the epochs' seconds up to it. A run that never reached it counts at
    its whole budget (censored at the cap: a lower bound on its time, which can only pull a difference to zero)."""
    reached = pd.Series(pd.NA, index=runs.index, dtype="boolean")
    first = pd.Series(np.nan, index=runs.index)
    seconds = pd.Series(np.nan, index=runs.index)
    if len(epochs) and {"train_acc", "epoch"} <= set(epochs.columns):
        rows = epochs.sort_values(["variant_id", "epoch"])
        acc = pd.to_numeric(rows["train_acc"], errors="coerce")  # the running (train-mode) accuracy of the epoch
        if "eval_train_acc" in rows:  # the eval-mode pass where the epoch made one: dropout off, the net as tested
            acc = np.fmax(acc, pd.to_numeric(rows["eval_train_acc"], errors="coerce"))
        per_epoch = pd.to_numeric(rows.get("epoch_seconds", pd.Series(np.nan, index=rows.index)), errors="coerce")
        rows = rows.assign(_hit=acc >= FIT_ACCURACY, _elapsed=per_epoch.groupby(rows["variant_id"]).cumsum())
        hits = rows[rows["_hit"]].groupby("variant_id").first()
        where = runs["variant_id"].map(lambda v: v in hits.index)
        measured = runs["variant_id"].isin(set(rows["variant_id"]))
        reached = reached.mask(measured, where)
        first = runs["variant_id"].map(hits["epoch"]).astype("float64")
        seconds = runs["variant_id"].map(hits["_elapsed"]).astype("float64")
    done = pd.to_numeric(runs["epochs_done"], errors="coerce").astype("float64")
    cap = pd.to_numeric(runs["epochs"], errors="coerce").astype("float64") if "epochs" in runs else done
    spent = pd.to_numeric(runs["train_seconds"], errors="coerce").astype("float64")
    if "stop_reason" in runs:
        recorded = runs["stop_reason"].isin(RULE_ENDINGS)
        first = first.mask(recorded, done.where(runs["stop_reason"] == CRITERION))
        seconds = seconds.mask(recorded, spent.where(runs["stop_reason"] == CRITERION))
        cap = cap.mask(recorded, done)
    analysed = runs["status"].isin(ANALYSED_STATUSES)
    whole = spent * cap / done.where(done > 0)  # the budget's seconds at this run's pace
    runs["epochs_to_fit"] = first.fillna(cap).where(analysed)
    runs["log_seconds_to_fit"] = np.log(seconds.fillna(whole).where(analysed & (seconds.fillna(whole) > 0)))
    return reached


def training_rates(results: Results) -> list[tuple[str, int, int]]:
    """Per variant, in label order: (its paper label, runs whose training failed, runs launched and not missing)."""
    runs = results.runs
    names = labels(runs, PAPER_LABELS, ", ")
    out = []
    for name, group in runs.groupby(names, sort=True):
        launched = int((group["training"] != MISSING).sum())
        out.append((str(name), int(group["training"].isin(FAILED_TRAINING).sum()), launched))
    return out


def config_columns(runs: pd.DataFrame) -> list[str]:
    """Variant fields present in the frame (seed excluded: it is what runs of a group differ in)."""
    return [
        c
        for c in runs.columns
        if c not in NOT_CONFIG
        and not c.startswith(("version_", "tuned_"))
        and not runs[c].map(lambda v: isinstance(v, (dict, list))).any()
    ]


def varying(runs: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns that take more than one value (null counts as a value) across these runs."""
    return [c for c in columns if runs[c].astype("string").fillna("<null>").nunique() > 1]


_LABEL_FORMAT = {
    "model": lambda v: "AlexNet reference" if v == "alexnet" else None,
    "arch": str,
    "head": str,
    "cccp": lambda v: f"cccp{v}",
    "dropout": lambda v: f"do{int(bool(v))}",
}


# How a report names each setting in a variant's label (the ablation table, the verdict lines): the paper's words.
PAPER_LABELS: dict[str, Any] = {
    "model": lambda v: "AlexNet (reference)" if v == "alexnet" else None,
    "arch": str,
    "head": lambda v: {"gap": "GAP", "fc": "FC", "alexnet": "AlexNet head"}.get(v, str(v)),
    "cccp": lambda v: f"cccp {v}",
    "dropout": lambda v: "dropout" if v else "no dropout",
    "gap_relu": lambda v: "ReLU before GAP" if v else "",  # the grid's linear GAP is the plain "GAP"
}


def labels(runs: pd.DataFrame, formats: dict[str, Any] | None = None, sep: str = "/") -> pd.Series:
    """A short readable name per group, e.g. 'gap/cccp2/do1' or 'AlexNet': what varies among runs of its model.
    `formats` (column -> value -> text; '' leaves the part out) and `sep` spell it otherwise, e.g. for a paper."""
    formats = formats or _LABEL_FORMAT
    named = runs["variant_id"].astype("string")  # what stays when a result could not be read
    config = config_columns(runs)
    for model, same_model in runs.groupby("model", sort=False):
        columns = varying(same_model, config)
        ordered = [c for c in formats if c in columns] + [c for c in columns if c not in formats]
        prefix = [] if model == "nin" else [formats["model"](model) or str(model)]
        for index, row in same_model.iterrows():
            parts = prefix + [_label_part(c, row[c], formats) for c in ordered if not _null(row[c])]
            named[index] = sep.join(part for part in parts if part) or str(model)
    # Labels must name groups one to one; a clash (a column missing in some files) falls back to the group id.
    clash = named.groupby(named).transform(lambda s: runs.loc[s.index, "group_id"].nunique() > 1).astype(bool)
    return named.where(~clash, runs["group_id"].astype("string"))


def _label_part(column: str, value: Any, formats: dict[str, Any]) -> str:
    return formats.get(column, lambda v: f"{column}={v}")(value)


def _null(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _epochs_frame(layout: GridDir, runs: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for run in runs.itertuples(index=False):
        path = layout.metrics_path(str(run.variant_id))
        if not path.is_file():
            continue

        def skipped(number: int, _text: str, path: Path = path) -> None:
            notes.append(f"{path}:{number}: not a JSON line; skipped")

        rows += [{"variant_id": run.variant_id, **row} for row in read_metrics(path, on_bad_line=skipped)]
    epochs = pd.DataFrame.from_records(rows)
    if epochs.empty:
        return pd.DataFrame(columns=["variant_id", "epoch", "train_acc", "test_acc"])
    keep = ["variant_id", "group_id", "label", "status", "stalled", "model", "head", "cccp", "dropout", "seed"]
    keep = [c for c in keep if c in runs.columns]
    return epochs.merge(runs[keep], on="variant_id", how="left")
