"""One self-contained HTML page: text, tables and the plots embedded as base64 PNG data URIs."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from reports.load import STALL_MARGIN, Results
from reports.stats import METHOD, SUMMARY_METHOD

RUN_COLUMNS = (
    "variant_id", "label", "seed", "status", "stalled", "test_acc", "train_acc", "gap_acc", "gap_loss",
    "running_train_acc", "best_test_acc", "epochs_done", "params", "macs", "train_seconds", "images_per_s", "device",
)  # fmt: skip
NOT_OK_COLUMNS = ("variant_id", "label", "seed", "status", "epochs_done", "error")
PLOT_CAPTIONS = {
    "accuracy_vs_params": "Test accuracy vs parameter count.",
    "accuracy_vs_macs": "Test accuracy vs compute per image.",
    "gap_per_variant": "Overfitting gap per variant (train accuracy from an eval-mode pass over the training set).",
    "learning_curves": "Learning curves of every ok run.",
    "effects": "Paired effect of each axis.",
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } .lead { font-size: 1.15em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; } th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; } .scroll { overflow-x: auto; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #ddd; }
li { margin: 0.3em 0; } .note { color: #555; font-size: 0.9em; }
"""


def render(
    results: Results,
    summary: pd.DataFrame,
    effects: pd.DataFrame,
    sentences: list[str],
    plots: dict[str, Path],
) -> str:
    grid = html.escape(results.name)
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>nin-ablate report: {grid}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>nin-ablate report: {grid}</h1>",
    ]
    if isinstance(results.spec.get("description"), str):
        parts.append(f"<p>{html.escape(results.spec['description'])}</p>")
    parts.append(f"<p class='lead'><strong>{html.escape(results.done_line())}</strong></p>")
    if results.unfinished:
        parts.append(
            f"<p>Not finished (running, interrupted or waiting): {len(results.unfinished)} run directories without "
            f"a result.json: {html.escape(', '.join(results.unfinished))}.</p>"
        )
    stalled = int(results.runs["stalled"].sum())
    parts.append(
        "<h2>How to read this</h2><ul>"
        "<li>Accuracies in the tables are fractions in [0, 1]; sentences and plots use percent and accuracy points "
        "(1 point = 0.01).</li>"
        "<li>gap_acc = train accuracy (eval-mode pass over the training set) − test accuracy; "
        "gap_loss = test loss − train loss.</li>"
        f"<li>Summary intervals: {html.escape(SUMMARY_METHOD)}.</li>"
        f"<li>Effects: {html.escape(METHOD)}.</li>"
        f"<li><strong>Stalled runs</strong> (final test accuracy ≤ 1/classes + {STALL_MARGIN:g}: the run never left "
        f"chance) are flagged in every table (<code>stalled</code>) and plot (red marker or hatch) and are left out "
        f"of every mean, interval and effect: a stall is a failure of optimisation in that seed, and one of them "
        f"would swamp a paired difference. This grid has {stalled} stalled runs.</li>"
        "<li>Runs whose status is not ok (diverged, failed) are listed apart below and left out of all "
        "statistics.</li></ul>"
    )
    parts.append("<h2>Effects</h2>")
    if sentences:
        parts.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in sentences) + "</ul>")
    else:
        parts.append("<p>No axis has two levels among the NiN runs yet.</p>")
    parts.append(_table(effects.drop(columns=["method"]), "effects.csv"))
    parts.append("<h2>Plots</h2>")
    for name, path in plots.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = html.escape(PLOT_CAPTIONS.get(name, name))
        parts.append(
            f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{caption} <span class='note'>(plots/{html.escape(path.name)})</span></figcaption></figure>"
        )
    parts.append("<h2>Summary per variant (across seeds)</h2>")
    parts.append(_table(summary, "summary.csv"))
    parts.append("<h2>Runs that did not finish ok</h2>")
    not_ok = results.not_ok
    if not_ok.empty:
        parts.append("<p>None.</p>")
    else:
        parts.append(_table(not_ok[[c for c in NOT_OK_COLUMNS if c in not_ok]], "results.csv (status column)"))
    parts.append("<h2>All runs</h2>")
    runs = results.runs
    parts.append(_table(runs[[c for c in RUN_COLUMNS if c in runs]], "results.csv (every column)"))
    if results.notes:
        parts.append(
            "<h2>Skipped while reading</h2><ul>"
            + "".join(f"<li>{html.escape(n)}</li>" for n in results.notes)
            + "</ul>"
        )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p class='note'>Written {stamp} from {html.escape(str(results.grid_dir))}.</p></body></html>")
    return "\n".join(parts)


def _table(frame: pd.DataFrame, source: str) -> str:
    if frame.empty:
        return f"<p class='note'>(empty; {html.escape(source)})</p>"
    body = frame.to_html(index=False, na_rep="–", float_format=_number, border=0, escape=True)
    return f"<div class='scroll'>{body}</div><p class='note'>Full table: {html.escape(source)}</p>"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4f}"
