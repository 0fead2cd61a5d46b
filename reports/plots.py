"""The report's figures as PNG files. Accuracies are drawn in percent, differences in accuracy points.

Figures are built with matplotlib's object API (no pyplot state), so they render with the Agg backend whatever
backend the calling process uses. Only status-ok runs are drawn; stalled runs (in every mean) carry a distinct red
marker or hatch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter, LogLocator, MaxNLocator, NullFormatter

from judge.load import STALL_MARGIN, Results
from judge.stats import FEW, MIN_INTERVAL_N, TIME_METRICS, level_text
from judge.stats import pairs as effect_pairs
from reports.tuning import TUNING_PLOT, tuning_figure
from reports.words import METRIC_NAMES

STALLED_COLOR = "#d62728"
STALLED_LABEL = f"stalled run (final train acc ≤ chance + {100 * STALL_MARGIN:g} points)"
REFERENCE_LABEL = "AlexNet reference"
PLOT_NAMES = (
    "accuracy_vs_params", "accuracy_vs_macs", "gap_per_variant", "learning_curves", "epochs_to_stop", "effects",
)  # fmt: skip
STOP_COLORS = {"criterion": "C2", "cap": "C3", "epochs": "C7"}  # nin.plateau's stop reasons


def write_plots(results: Results, summary: pd.DataFrame, effects: pd.DataFrame, plot_dir: Path) -> dict[str, Path]:
    plot_dir.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid", context="notebook")
    figures = {
        "accuracy_vs_params": accuracy_vs(results, "params", "parameters (count, log scale)"),
        "accuracy_vs_macs": accuracy_vs(results, "macs", "MACs per image, forward (fvcore multiply-adds, log scale)"),
        "gap_per_variant": gap_bars(summary),
        "learning_curves": learning_curves(results),
        "epochs_to_stop": epochs_to_stop(results),
        "effects": effect_plot(effects),
    }
    tuned = tuning_figure(results.grid_dir)  # a grid with `tune:` only; the page shows it with the picks
    if tuned is not None:
        figures[TUNING_PLOT] = tuned
    paths = {}
    for name, figure in figures.items():
        paths[name] = plot_dir / f"{name}.png"
        figure.savefig(paths[name], dpi=100, bbox_inches="tight")
    return paths


def _empty(figure: Figure, ax: Any, message: str) -> Figure:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    return figure


def accuracy_vs(results: Results, x: str, xlabel: str) -> Figure:
    figure = Figure(figsize=(10, 5.5), layout="constrained")
    ax = figure.add_subplot()
    ax.set_title(f"Test accuracy vs {x.replace('macs', 'MACs')} (one point per run)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ok = results.ok[results.ok[x].notna()].assign(test_pct=lambda f: 100 * f["test_acc"])
    if ok.empty:
        return _empty(figure, ax, f"no finished ok runs with {x} known yet")
    nin = ok[ok["model"] == "nin"]
    if not nin.empty:
        nin = nin.assign(cccp=nin["cccp"].map(lambda v: f"cccp {v}"), head=nin["head"].astype(str))
        sns.scatterplot(
            data=nin, x=x, y="test_pct", hue="cccp", style="head", hue_order=sorted(nin["cccp"].unique()),
            s=70, alpha=0.8, ax=ax,
        )  # fmt: skip
    reference = ok[ok["model"] != "nin"]
    if not reference.empty:
        ax.scatter(reference[x], reference["test_pct"], marker="*", s=220, c="black", label=REFERENCE_LABEL)
    stalled = ok[ok["stalled"]]
    if not stalled.empty:
        # A ring around the point: every head's marker stays readable under it.
        ax.scatter(
            stalled[x], stalled["test_pct"], marker="o", s=320, facecolors="none", edgecolors=STALLED_COLOR,
            linewidths=2, label=STALLED_LABEL,
        )  # fmt: skip
    ax.set_xscale("log")
    # 1-2-5 ticks read as 2M, 5M, 10M: plain decades alone leave a narrow range with a single label.
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    return figure


def gap_bars(summary: pd.DataFrame) -> Figure:
    rows = summary.iloc[::-1]
    figure = Figure(figsize=(8, 1.2 + 0.35 * max(len(rows), 1)))
    ax = figure.add_subplot()
    ax.set_title("Overfitting gap per variant: train − test accuracy (eval mode), mean and 95% t-interval")
    ax.set_xlabel("gap (accuracy points)")
    if rows.empty or rows["gap_acc_mean"].isna().all():
        return _empty(figure, ax, "no finished ok runs yet")
    y = np.arange(len(rows))
    mean = 100 * rows["gap_acc_mean"].to_numpy(dtype=float)
    low = mean - 100 * rows["gap_acc_ci_low"].to_numpy(dtype=float)
    high = 100 * rows["gap_acc_ci_high"].to_numpy(dtype=float) - mean
    colors = ["C0" if model == "nin" else "0.45" for model in rows["model"]]
    hatches = ["//" if stalled else "" for stalled in rows["stalled"]]
    bars = ax.barh(y, np.nan_to_num(mean), color=colors, edgecolor="black", linewidth=0.5)
    for bar, hatch in zip(bars, hatches):
        bar.set_hatch(hatch)
        if hatch:
            bar.set_edgecolor(STALLED_COLOR)
    has_ci = ~np.isnan(low)  # no bar from fewer than MIN_INTERVAL_N runs
    ax.errorbar(mean[has_ci], y[has_ci], xerr=[low[has_ci], high[has_ci]], fmt="none", ecolor="black", capsize=3)
    ax.set_yticks(y, [f"{label} (n={n}{', no CI' if n < MIN_INTERVAL_N else ''})"
                      for label, n in zip(rows["label"], rows["n"])])  # fmt: skip
    ax.axvline(0, color="black", linewidth=0.8)
    handles = [Patch(facecolor="C0", label="NiN variant"), Patch(facecolor="0.45", label=REFERENCE_LABEL)]
    if any(hatches):
        handles.append(
            Patch(facecolor="white", edgecolor=STALLED_COLOR, hatch="//", label="has stalled runs (kept in)")
        )
    ax.legend(handles=handles, loc="best", fontsize="small")
    return figure


def learning_curves(results: Results) -> Figure:
    epochs = results.epochs
    epochs = epochs[(epochs.get("status") == "ok")] if "status" in epochs else epochs.iloc[0:0]
    panels = _panels(epochs)
    ncols = max(1, max((len(row) for row in panels), default=1))
    figure = Figure(figsize=(4 * ncols, 3.2 * max(len(panels), 1) + 0.8), layout="constrained")
    figure.suptitle("Learning curves: train (running, training mode) vs test accuracy per epoch, by head × cccp")
    if not panels:
        return _empty(figure, figure.add_subplot(), "no per-epoch metrics of ok runs yet")
    axes = figure.subplots(len(panels), ncols, squeeze=False, sharey=True)
    for r, row in enumerate(panels):
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(row):
                ax.set_visible(False)
                continue
            title, frame = row[c]
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("accuracy (%)")
            for _, run in frame.groupby("variant_id", sort=False):
                _draw_run(ax, run.sort_values("epoch"))
    handles = [
        Line2D([], [], color="C0", label="train (running, training mode)"),
        Line2D([], [], color="C1", label="test"),
        Line2D([], [], color="C2", marker="o", linestyle="none", label="train (eval mode)"),
        Line2D([], [], color="0.3", linestyle="-", label="dropout on"),
        Line2D([], [], color="0.3", linestyle="--", label="dropout off"),
        Line2D([], [], color="k", marker="v", linestyle="none", label="learning rate dropped after this epoch"),
    ]
    if epochs["stalled"].astype(bool).any():
        handles.append(Line2D([], [], color=STALLED_COLOR, marker="x", label=STALLED_LABEL))
    figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize="small")
    return figure


def _panels(epochs: pd.DataFrame) -> list[list[tuple[str, pd.DataFrame]]]:
    if epochs.empty:
        return []
    nin = epochs[epochs["model"] == "nin"]
    rows = []
    if not nin.empty:
        heads = list(pd.unique(nin["head"].dropna()))
        cccps = sorted(pd.unique(nin["cccp"].dropna()))
        for head in heads:
            row = []
            for cccp in cccps:
                frame = nin[(nin["head"] == head) & (nin["cccp"] == cccp)]
                row.append((f"head {head} · cccp {cccp}", frame))
            rows.append(row)
    reference = epochs[epochs["model"] != "nin"]
    if not reference.empty:
        rows.append([(REFERENCE_LABEL, reference)])
    return rows


def _draw_run(ax: Any, run: pd.DataFrame) -> None:
    stalled = bool(run["stalled"].iloc[0])
    style = "-" if bool(run["dropout"].iloc[0]) else "--"
    marker = "x" if stalled else None
    train_color, test_color = (STALLED_COLOR, STALLED_COLOR) if stalled else ("C0", "C1")
    ax.plot(run["epoch"], 100 * run["train_acc"], color=train_color, linestyle=style, marker=marker, alpha=0.7)
    ax.plot(run["epoch"], 100 * run["test_acc"], color=test_color, linestyle=style, marker=marker, alpha=0.9)
    if "eval_train_acc" in run and run["eval_train_acc"].notna().any():
        ax.plot(run["epoch"], 100 * run["eval_train_acc"], color="C2", marker="o", linestyle="none", alpha=0.8)
    if "lr_drop" in run:
        drops = run[run["lr_drop"].fillna(False).astype(bool)]
        ax.plot(drops["epoch"], 100 * drops["train_acc"], color="k", marker="v", linestyle="none", markersize=5)


def _has_endings(runs: pd.DataFrame) -> bool:
    return "stop_reason" in runs and runs["stop_reason"].notna().any()


def epochs_to_stop(results: Results) -> Figure:
    """Each run's epochs per variant, coloured by why it stopped, with its learning-rate drops as small ticks: where
    a stopping rule is in use, which variants need long to reach it and which hit the cap."""
    runs = results.runs[results.runs["epochs_done"].notna()]
    labels = list(pd.unique(runs["label"]))
    figure = Figure(figsize=(9, 1.2 + 0.35 * max(len(labels), 1)), layout="constrained")
    ax = figure.add_subplot()
    if not _has_endings(runs):
        return _empty(figure, ax, "no run recorded why it stopped (results from before stop_reason)")
    jitter = np.linspace(-0.25, 0.25, max(int(runs.groupby("label").size().max()), 1))
    for y, label in enumerate(labels):
        group = runs[runs["label"] == label].reset_index(drop=True)
        for i, run in group.iterrows():
            yi = y + (jitter[i] if len(group) > 1 else 0.0)
            ax.plot(run["epochs_done"], yi, "o", color=STOP_COLORS.get(run["stop_reason"], STALLED_COLOR))
            drops = [int(d) for d in str(run.get("lr_drop_epochs") or "").split()]
            ax.plot(drops, [yi] * len(drops), "|", color="0.4", markersize=7)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("epochs trained")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    reasons = [r for r in STOP_COLORS if (runs["stop_reason"] == r).any()]
    handles = [
        Line2D([], [], color=STOP_COLORS[r], marker="o", linestyle="none", label=f"stopped: {r}") for r in reasons
    ]
    handles.append(Line2D([], [], color="0.4", marker="|", linestyle="none", label="learning-rate drop"))
    ax.legend(handles=handles, loc="best", fontsize="small")
    return figure


def effect_plot(effects: pd.DataFrame) -> Figure:
    names = {**METRIC_NAMES, "gap_acc": "overfitting gap (train − test)"}
    pairs = effect_pairs(effects)
    # Accuracy-like outcomes only: the training times (epochs, log seconds) have their own units and verdicts.
    metrics = [m for m in pd.unique(effects["metric"]) if m not in TIME_METRICS] or ["test_acc", "gap_acc"]
    figure = Figure(figsize=(5.5 * len(metrics), 1.5 + 0.45 * max(len(pairs), 1)), layout="constrained")
    figure.suptitle("Paired effects: level A − level B, mean and 95% t-interval (zero line = no effect)")
    axes = figure.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    if not pairs:
        for ax in axes[1:]:
            ax.set_visible(False)
        return _empty(figure, axes[0], "no axis with two levels among the NiN runs")
    y = np.arange(len(pairs))[::-1]
    ticks = []
    for pair in pairs:
        row = pair["test_acc"]
        tick = f"{row.axis}: {level_text(row.axis, row.level_a)} vs {level_text(row.axis, row.level_b)}"
        if row.subset:
            tick += f" ({row.subset})"
        failed = row.pairs_failed_training
        ticks.append(tick + (f" [{failed} pairs with failed training, kept]" if failed else ""))
    for ax, metric in zip(axes, metrics):
        rows = [(yi, pair[metric]) for yi, pair in zip(y, pairs) if metric in pair]
        low, high = _effect_limits([row for _, row in rows])
        for yi, row in rows:
            _draw_effect(ax, yi, row, low, high)
        ax.set_xlim(low, high)
        ax.axvline(0, color="black", linewidth=1)
        ax.set_title(names.get(metric, metric))
        ax.set_xlabel("difference (accuracy points)")
    axes[0].set_yticks(y, ticks)
    handles = [
        Line2D([], [], color="C3", marker="o", linestyle="none", label="95% CI excludes zero"),
        Line2D([], [], color="C0", marker="o", linestyle="none", label="95% CI includes zero"),
        Line2D([], [], color="0.5", marker="D", linestyle="none", label=f"{FEW}: no interval"),
        Line2D([], [], color="0.5", marker=">", linestyle="none", label="beyond the axis (value written)"),
    ]
    if any(pair["test_acc"].pairs_failed_training for pair in pairs):
        handles.append(
            Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="none",
                   label="has pairs with a failed training run (kept in)")
        )  # fmt: skip
    figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize="small")
    return figure


def _effect_limits(rows: list[Any]) -> tuple[float, float]:
    """x limits (points) from the intervals that exist and zero, so that a mean without an interval (n < 3) cannot
    stretch the axis and flatten every other effect; the means alone where no interval exists."""
    with_ci = [r for r in rows if pd.notna(r.ci_low)]
    if with_ci:
        values = [100 * v for r in with_ci for v in (r.ci_low, r.ci_high)]
    else:
        values = [100 * r.mean_diff for r in rows if pd.notna(r.mean_diff)]
    values.append(0.0)
    low, high = min(values), max(values)
    pad = 0.08 * (high - low) or 1.0
    return low - pad, high + pad


def _draw_effect(ax: Any, yi: float, row: Any, low: float, high: float) -> None:
    mean = 100 * float(row.mean_diff)
    if np.isnan(mean):
        return
    if pd.isna(row.ci_low):  # fewer than MIN_INTERVAL_N pairs: the point alone
        color, marker, err = "0.5", "D", None
    else:
        color, marker = ("C3" if row.ci_excludes_zero else "C0"), "o"
        err = [[mean - 100 * row.ci_low], [100 * row.ci_high - mean]]
    if not low <= mean <= high:  # only means without an interval can fall outside: pinned inside the edge
        right = mean > high
        edge = high - 0.02 * (high - low) if right else low + 0.02 * (high - low)
        ax.plot(edge, yi, marker=">" if right else "<", color=color, markersize=9)
        ax.annotate(f"{mean:+.1f}", (edge, yi), textcoords="offset points", xytext=(-9 if right else 9, 0),
                    ha="right" if right else "left", va="center", fontsize="small", color=color)  # fmt: skip
        return
    ax.errorbar(
        mean, yi, xerr=err, fmt=marker, color=color, capsize=4, markersize=7,
        markerfacecolor="white" if row.pairs_failed_training else color,
    )  # fmt: skip
