"""One self-contained HTML page: text, tables and the plots embedded as base64 PNG data URIs."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from reports import stats, tables
from reports.cam_figure import CAM_PLOT
from reports.load import STALL_MARGIN, Results
from reports.stats import FEW, METHOD, MIN_INTERVAL_N, SUMMARY_METHOD
from reports.verdicts import CONTRADICTED, INCONCLUSIVE, NO_CANVAS, NOT_TESTED, SUPPORTED

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
table.verdicts { font-size: 0.95em; } table.verdicts td { vertical-align: top; white-space: nowrap; }
table.verdicts td.text, table.verdicts th.text { text-align: left; white-space: normal; max-width: 32em; }
table.verdicts td.word-cell { text-align: left; }
.word { font-weight: bold; padding: 1px 7px; border-radius: 4px; white-space: nowrap; }
.supported { background: #d7f0d2; color: #1d5e12; } .contradicted { background: #f8d3d0; color: #8a1a10; }
.inconclusive { background: #fbeccb; color: #7a5200; } .untested { background: #e8e8e8; color: #555; }
.reference td { border-top: 2px solid #888; }
"""
WORD_CLASS = {SUPPORTED: "supported", CONTRADICTED: "contradicted", INCONCLUSIVE: "inconclusive"}


def render(
    results: Results,
    summary: pd.DataFrame,
    effects: pd.DataFrame,
    claims: pd.DataFrame,
    exact_head: str | None,
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
    parts.append("<h2>Verdicts</h2>")
    parts.append(_verdicts(claims, exact_head))
    parts.append("<h2>Class maps</h2>")
    plots = dict(plots)
    cam = plots.pop(CAM_PLOT, None)
    parts.append(_class_maps(results, cam))
    parts.append("<h2>Summary per variant (across seeds)</h2>")
    parts.append(_summary(results, summary))
    stalled = int(results.runs["stalled"].sum())
    parts.append(
        "<h2>How to read this</h2><ul>"
        f"<li>Verdicts: <em>supported</em> when the 95% interval of the paired difference excludes zero in the "
        f"claimed direction, <em>contradicted</em> when it excludes zero the other way, otherwise "
        f"<em>inconclusive</em>, with the seeds that would resolve the observed mean at the observed spread. No "
        f"interval is computed from fewer than {MIN_INTERVAL_N} values (tables say “{FEW}”). Parameter claims "
        f"compare exact counts (GAP/other at matched settings).</li>"
        "<li>Accuracies in the CSV tables are fractions in [0, 1]; sentences, plots and the summary above use "
        "percent and accuracy points (1 point = 0.01).</li>"
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
        parts.append(_figure(name, path, PLOT_CAPTIONS.get(name, name)))
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


def _figure(name: str, path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(caption)} <span class='note'>(plots/{html.escape(path.name)})</span></figcaption>"
        "</figure>"
    )


def _class_maps(results: Results, cam: Path | None) -> str:
    if cam is None:
        return f"<p>{html.escape(NO_CANVAS[0].upper() + NO_CANVAS[1:])}: no run kept class maps (cam.npz).</p>"
    ok = results.ok[~results.ok["stalled"]]
    measured = ok[ok["loc_pointing"].notna()]
    lead = ""
    if not measured.empty:
        items = []
        for label, runs in measured.groupby("label", sort=False):
            items.append(
                f"<li>{html.escape(str(label))}: pointing game {runs['loc_pointing'].mean():.1%} (chance "
                f"{runs['loc_pointing_chance'].mean():.1%}), positive map mass in the box "
                f"{runs['loc_energy'].mean():.1%}, mean of {stats.count(len(runs), 'run')}</li>"
            )
        lead = (
            "<p>Localisation on every test image (stalled runs left out; per run: loc_pointing, "
            "loc_pointing_chance and loc_energy in results.csv):</p><ul>" + "".join(items) + "</ul>"
        )
    caption = (
        "Class maps of the true class (CAM for the GAP head, Grad-CAM for the others), upsampled to the input and "
        "laid over the image as the net saw it; white: the object's box; above each cell: the predicted class, its "
        "probability and the true class. Rows: one run per head at the first seed and the first cccp and dropout "
        "levels."
    )
    return lead + _figure(CAM_PLOT, cam, caption)


def _verdicts(claims: pd.DataFrame, exact_head: str | None) -> str:
    rows = []
    for row in claims.itertuples():
        word = f"<span class='word {WORD_CLASS.get(row.verdict, 'untested')}'>{html.escape(row.verdict)}</span>"
        if row.kind == "ratio":
            number = "–" if pd.isna(row.mean) else f"{row.mean:.2f} (ratio)"
            interval = "exact count" if pd.notna(row.mean) else "–"
            details = "; ".join(part for part in (row.detail, row.note) if part)
        else:
            number = "–" if pd.isna(row.mean) else f"{100 * row.mean:+.1f} pts"
            interval = "–" if pd.isna(row.mean) else _interval(row.ci_low, row.ci_high, row.n_pairs)
            details = row.note
        pairs = "–" if pd.isna(row.n_pairs) else str(row.n_pairs)
        rows.append(
            f"<tr><td class='text'>{html.escape(row.claim)}</td><td class='word-cell'>{word}</td><td>{number}</td>"
            f"<td>{html.escape(interval)}</td><td>{pairs}</td><td class='text'>{html.escape(details)}</td></tr>"
        )
    table = (
        "<table class='verdicts'><tr><th class='text'>Claim</th><th class='text'>Verdict</th><th>Number</th>"
        "<th>95% CI</th><th>Pairs</th><th class='text'>Details</th></tr>" + "".join(rows) + "</table>"
    )
    counts = claims["verdict"].value_counts()
    tally = ", ".join(f"{counts[word]} {word}" for word in (*WORD_CLASS, NOT_TESTED) if word in counts)
    lead = f"<p class='lead'>{html.escape(stats.count(len(claims), 'claim'))} checked: {html.escape(tally)}.</p>"
    extra = f"<p>{html.escape(exact_head)}</p>" if exact_head else ""
    note = (
        "<p class='note'>Differences are paired (GAP minus the other head, cccp more minus fewer, dropout on minus "
        "off) in accuracy points; the overfitting gap is train minus test accuracy, so reducing overfitting is a "
        "negative difference. Full table: <a href='verdicts.csv'>verdicts.csv</a>.</p>"
    )
    return lead + table + extra + note


def _interval(low: float, high: float, n: Any) -> str:
    if pd.isna(low):
        return FEW if pd.notna(n) and n < MIN_INTERVAL_N else "–"
    return f"{100 * low:+.1f} to {100 * high:+.1f}"


def _summary(results: Results, summary: pd.DataFrame) -> str:
    """The columns people compare, readable labels first, best NiN value per column in bold."""
    frame = tables.ablation_frame(results, summary)
    if frame.empty:
        return "<p class='note'>(no finished runs yet)</p>"
    bold = tables.best(frame)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in (*tables.HEADERS, "n", "stalled", "not ok"))
    rows = []
    for i, row in frame.iterrows():
        texts = tables.cells(row, "md")
        cells = [f"<td>{html.escape(str(row['variant']))}</td>"]
        for column, text in texts.items():
            text = html.escape(text)
            cells.append(f"<td><strong>{text}</strong></td>" if bold.loc[i, column] else f"<td>{text}</td>")
        cells += [f"<td>{int(row[c])}</td>" for c in ("n", "stalled", "not_ok")]
        first_reference = row["reference"] and not frame["reference"].iloc[:i].any()
        rows.append(f"<tr{' class=reference' if first_reference else ''}>" + "".join(cells) + "</tr>")
    return (
        f"<table><tr>{head}</tr>{''.join(rows)}</table><p class='note'>Mean ± sd (n runs) over seeds; stalled and "
        "not-ok runs are counted, not averaged. Bold: best NiN variant per column. Every column, with 95% "
        "intervals and group ids: <a href='summary.csv'>summary.csv</a>; the same table for a paper: "
        "<a href='ablation.md'>ablation.md</a>, <a href='ablation.tex'>ablation.tex</a>.</p>"
    )


def _table(frame: pd.DataFrame, source: str) -> str:
    if frame.empty:
        return f"<p class='note'>(empty; {html.escape(source)})</p>"
    body = frame.to_html(index=False, na_rep="–", float_format=_number, border=0, escape=True)
    return f"<div class='scroll'>{body}</div><p class='note'>Full table: {html.escape(source)}</p>"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4f}"
