"""One self-contained HTML page: text, tables and the plots embedded as base64 PNG data URIs."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from judge import sequential, stats
from judge import verdicts as verdict_rule
from judge.load import STALL_MARGIN, UNDERFIT_POINTS, Results
from judge.stats import FEW, METHOD, MIN_INTERVAL_N, SUMMARY_METHOD
from judge.verdicts import CONTRADICTED, EQUIVALENT, INCONCLUSIVE, NO_CANVAS, NOT_TESTED, SUPPORTED
from reports import tables, tuning
from reports.cam_figure import CAM_PLOT

RUN_COLUMNS = (
    "variant_id", "label", "seed", "status", "stalled", "underfit", "test_acc", "train_acc", "gap_acc", "gap_loss",
    "running_train_acc", "epochs_done", "stop_reason", "lr_drop_epochs", "train_images", "params", "macs",
    "train_seconds", "images_per_s", "device",
)  # fmt: skip
NOT_OK_COLUMNS = ("variant_id", "label", "seed", "status", "epochs_done", "error")
PLOT_CAPTIONS = {
    "accuracy_vs_params": "Test accuracy vs parameter count.",
    "accuracy_vs_macs": "Test accuracy vs compute per image.",
    "gap_per_variant": "Overfitting gap per variant (train accuracy from an eval-mode pass over the training set).",
    "learning_curves": "Learning curves of every ok run; ▼ marks the epoch after which the learning rate dropped.",
    "epochs_to_stop": "Epochs each run trained, per variant, by why it stopped; small ticks: learning-rate drops.",
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
.equivalent { background: #d6e6f7; color: #123f6e; } .qualifier { color: #555; font-size: 0.9em; }
.reference td { border-top: 2px solid #888; }
"""
WORD_CLASS = {SUPPORTED: "supported", CONTRADICTED: "contradicted", EQUIVALENT: "equivalent",
              INCONCLUSIVE: "inconclusive"}  # fmt: skip


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
    grown = results if results.sequence is not None else None
    parts.append(_verdicts(claims, exact_head, verdict_rule.underfit_text(results), grown))
    plots = dict(plots)  # the caller's dict keeps every plot (W&B logs them all)
    parts.append(tuning.section(results.grid_dir, plots.pop(tuning.TUNING_PLOT, None), _figure))
    parts.append("<h2>Class maps</h2>")
    cam = plots.pop(CAM_PLOT, None)
    parts.append(_class_maps(results, cam))
    parts.append("<h2>Summary per variant (across seeds)</h2>")
    parts.append(_summary(results, summary))
    parts.append(_ending(results))
    stalled = int(results.runs["stalled"].sum())
    parts.append(
        "<h2>How to read this</h2><ul>"
        f"<li>Verdicts: one error budget per report. {html.escape(_family(results, claims))} "
        f"A <em>superiority</em> claim (raises, reduces, localises better) is <em>supported</em> when its interval "
        f"lies on the claimed side of zero, <em>contradicted</em> when it lies on the other side, <em>equivalent</em> "
        f"when it contains zero and lies inside ±margin (a supported or contradicted interval inside ±margin says "
        f"“smaller than the margin”). A <em>non-inferiority</em> claim (matches or beats) is supported when the "
        f"interval's lower end is above −margin (“equivalent” too when it also ends below +margin) and contradicted "
        f"when it lies wholly below −margin. Otherwise a claim is <em>inconclusive</em>, with the seeds that would "
        f"resolve it at the observed seed-level spread. Margins are fractions set by the grid file's "
        f"<code>margins:</code> (defaults {html.escape(_margins_text(verdict_rule.DEFAULT_MARGINS))}; "
        f"<code>nin-ablate report DIR --margin test_acc=0.005</code> overrides). No interval is computed from fewer "
        f"than {MIN_INTERVAL_N} seeds (tables say “{FEW}”). Parameter claims compare exact counts (GAP/other at "
        f"matched settings).</li>"
        f"<li><strong>Under-fitted runs</strong>: eval-mode train accuracy {100 * UNDERFIT_POINTS:.0f} or more "
        f"points below the best seed of the same variant (the test set is never read for this). A verdict that rests "
        f"on them names them and gives the verdict without their pairs; this grid has "
        f"{int(results.runs['underfit'].sum()) if 'underfit' in results.runs else 0} such runs. "
        f"Where a variant's seeds split into two groups, the summary shows the median and interquartile mean beside "
        f"mean ± sd.</li>"
        "<li>Accuracies in the CSV tables are fractions in [0, 1]; sentences, plots and the summary above use "
        "percent and accuracy points (1 point = 0.01).</li>"
        "<li>gap_acc = train accuracy (eval-mode pass over the training set) − test accuracy; "
        "gap_loss = test loss − train loss.</li>"
        f"<li>Summary intervals: {html.escape(SUMMARY_METHOD)}.</li>"
        f"<li>Effects (unadjusted: the verdicts above read the family-adjusted intervals): "
        f"{html.escape(METHOD)}.</li>"
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


def _verdicts(claims: pd.DataFrame, exact_head: str | None, underfit: str = "", grown: Results | None = None) -> str:
    """The verdicts table; `grown`: the results of a grid grown by --until-resolved (a column says where each claim
    resolved, and a line what the sequence spent)."""
    rows = []
    for row in claims.itertuples():
        word = f"<span class='word {WORD_CLASS.get(row.verdict, 'untested')}'>{html.escape(row.verdict)}</span>"
        if row.qualifier:
            word += f"<br><span class='qualifier'>{html.escape(row.qualifier)}</span>"
        if row.kind == "ratio":
            number = "–" if pd.isna(row.mean) else f"{row.mean:.2f} (ratio)"
            interval = "exact count" if pd.notna(row.mean) else "–"
            rule = "exact count"
            details = "; ".join(part for part in (row.detail, row.note) if part)
            seeds = "–"
        else:
            number = "–" if pd.isna(row.mean) else f"{100 * row.mean:+.1f} pts"
            interval = "–" if pd.isna(row.mean) else _interval(row.ci_low_adjusted, row.ci_high_adjusted, row.n_seeds)
            rule = "–" if row.verdict == NOT_TESTED else f"{row.rule}, ±{100 * row.margin:g} pts"
            details = row.note
            seeds = "–" if pd.isna(row.n_seeds) else f"{row.n_seeds} ({row.n_pairs} pairs)"
        without = row.without_text if isinstance(row.without_text, str) and row.without_text else "–"
        resolved = f"<td class='text'>{html.escape(row.sequence or '–')}</td>" if grown is not None else ""
        rows.append(
            f"<tr><td class='text'>{html.escape(row.claim)}</td><td class='word-cell'>{word}</td>{resolved}"
            f"<td class='text'>{html.escape(rule)}</td><td>{number}</td><td>{html.escape(interval)}</td>"
            f"<td>{html.escape(seeds)}</td><td class='text'>{html.escape(details)}</td>"
            f"<td class='text'>{html.escape(without)}</td></tr>"
        )
    confidence = claims["confidence_adjusted"].dropna()
    level = f"{confidence.iloc[0]:.2%} CI" if len(confidence) else "CI"
    if grown is not None:  # each claim's interval is at its closing look's nominal level
        level = "CI at the look"
    resolved_head = "<th class='text'>Resolved at</th>" if grown is not None else ""
    table = (
        f"<table class='verdicts'><tr><th class='text'>Claim</th><th class='text'>Verdict</th>{resolved_head}"
        f"<th class='text'>Rule, margin</th><th>Difference</th><th>{html.escape(level)} (adjusted)</th>"
        "<th>Seeds</th><th class='text'>Details</th><th class='text'>Without under-fitted runs</th></tr>"
        + "".join(rows) + "</table>"
    )
    counts = claims["verdict"].value_counts()
    tally = ", ".join(f"{counts[word]} {word}" for word in (*WORD_CLASS, NOT_TESTED) if word in counts)
    lead = f"<p class='lead'>{html.escape(stats.count(len(claims), 'claim'))} checked: {html.escape(tally)}.</p>"
    if grown is not None:
        family = (f"<p><strong>{html.escape(sequential.spend_text(grown))}</strong></p>"
                  f"<p>{html.escape(sequential.family_text(grown.sequence))}</p>")  # fmt: skip
    else:
        family = f"<p>{html.escape(verdict_rule.family_text(claims))}</p>"
    if underfit:
        family += f"<p><strong>Under-fitted runs.</strong> {html.escape(underfit)}</p>"
    extra = f"<p>{html.escape(exact_head)}</p>" if exact_head else ""
    note = (
        "<p class='note'>Differences are paired (GAP minus the other head, cccp more minus fewer, dropout on minus "
        "off) in accuracy points, averaged within each seed; the overfitting gap is train minus test accuracy, so "
        "reducing overfitting is a negative difference. Full table, with the plain 95% interval beside the adjusted "
        "one: <a href='verdicts.csv'>verdicts.csv</a>.</p>"
    )
    return lead + family + table + extra + note


def _family(results: Results, claims: pd.DataFrame) -> str:
    if results.sequence is not None:
        return sequential.family_text(results.sequence)
    return verdict_rule.family_text(claims)


def _margins_text(margins: dict[str, float]) -> str:
    return ", ".join(f"{metric} {value:g}" for metric, value in margins.items())


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


def _ending(results: Results) -> str:
    """How each variant's runs ended: the stopping rule's record (stop_reason, epochs, drops) per variant."""
    frame = tables.ending_frame(results)
    if frame.empty:
        return ""
    return (
        "<h2>How training ended</h2>"
        + frame.to_html(index=False, border=0, escape=True)
        + "<p class='note'>criterion: the stopping rule's (training accuracy, or the grid's monitor, stopped improving "
        "after the last learning-rate drop); cap: the epoch cap came first; epochs: a fixed-length schedule. Per run: "
        "stop_reason, epochs_done, lr_drop_epochs and train_images in results.csv.</p>"
    )


def _table(frame: pd.DataFrame, source: str) -> str:
    if frame.empty:
        return f"<p class='note'>(empty; {html.escape(source)})</p>"
    body = frame.to_html(index=False, na_rep="–", float_format=_number, border=0, escape=True)
    return f"<div class='scroll'>{body}</div><p class='note'>Full table: {html.escape(source)}</p>"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4f}"
