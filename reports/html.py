"""One self-contained HTML page: text, tables and the plots embedded as base64 PNG data URIs."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from judge import verdicts as verdict_rule
from judge.load import DIVERGED, FIT, MISSING, STALL_MARGIN, STALLED, UNDERFIT, Results
from judge.stats import FEW, METHOD, MIN_INTERVAL_N, SUMMARY_METHOD
from judge.verdicts import CONTRADICTED, EQUIVALENT, INCONCLUSIVE, NOT_TESTED, SUPPORTED
from reports import tables, tuning, words
from reports.cam_figure import CAM_PLOT
from reports.words import NO_CANVAS

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
    sensitivity: pd.DataFrame | None = None,
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
    parts.append(_verdicts(claims, exact_head, words.training_text(results), grown, results))
    parts.append("<h2>Trainability per variant</h2>")
    parts.append(_trainability(results))
    parts.append("<h2>Sensitivity analysis: without the runs whose training failed</h2>")
    parts.append(_sensitivity(sensitivity))
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
        f"when it lies wholly below −margin. Otherwise a claim is <em>inconclusive</em>, with a planning figure for a "
        f"new, independent grid (adding seeds to this one and reporting again looks twice: "
        f"<code>run --until-resolved</code> plans its looks). Trainability is an exact paired test (McNemar) at the "
        f"family's level, the unit the pair of runs at one setting and seed: <em>contradicted</em> when the shares of "
        f"runs that fit differ, the line saying which way; only discordant pairs (one side fit, the other not) can "
        f"decide it. "
        f"Training time to the criterion: superiority at 1 epoch and at 10% of wall time (log ratio); contradicted "
        f"means GAP needs more. Margins are set by the grid file's "
        f"<code>margins:</code> (defaults {html.escape(_margins_text(verdict_rule.DEFAULT_MARGINS))}; "
        f"<code>nin-ablate report DIR --margin test_acc=0.005</code> overrides, and the rule then says the margin "
        f"was chosen after the runs). No interval is computed from fewer "
        f"than {MIN_INTERVAL_N} seeds (tables say “{FEW}”). Parameter claims compare exact counts (GAP/other at "
        f"matched settings).</li>"
        f"<li><strong>Failed training is an outcome</strong>: a run <em>stalled</em> (final training accuracy ≤ "
        f"1/classes + {STALL_MARGIN:g}), <em>under-fitted</em> (never reached the criterion: "
        f"{html.escape(words.criterion_text())}) or <em>diverged</em>, decided per run from training data "
        f"alone (the test set is never read for it), stays in its pairs with its outcome: the verdicts are judged "
        f"over the runs the grid launched (intention to treat). A run that failed for a reason not the method's "
        f"(an exception, an OOM) is missing data: its seed leaves the claims it belongs to, and the line says so. "
        f"Where a variant's seeds split into two groups, the summary shows the median and interquartile mean beside "
        f"mean ± sd.</li>"
        "<li>Accuracies in the CSV tables are fractions in [0, 1]; sentences, plots and the summary above use "
        "percent and accuracy points (1 point = 0.01).</li>"
        "<li>gap_acc = train accuracy (eval-mode pass over the training set) − test accuracy; "
        "gap_loss = test loss − train loss.</li>"
        f"<li>Summary intervals: {html.escape(SUMMARY_METHOD)}.</li>"
        f"<li>Effects (unadjusted: the verdicts above read the family-adjusted intervals): "
        f"{html.escape(METHOD)}.</li>"
        f"<li>This grid has {stalled} stalled runs; they are marked in every table (<code>stalled</code>) and plot "
        f"(red marker or hatch) and counted in every mean.</li>"
        "<li>Runs whose status is not ok are listed apart below: a diverged run (the method's doing) is judged at "
        "chance where it recorded no outcome; a failed one is missing data.</li></ul>"
    )
    parts.append("<h2>Effects</h2>")
    if sentences:
        parts.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in sentences) + "</ul>")
    else:
        parts.append("<p>No axis has two levels among the NiN runs yet.</p>")
    parts.append(_table(_readable_effects(effects), "effects.csv"))
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
                f"{runs['loc_energy'].mean():.1%}, mean of {words.count(len(runs), 'run')}</li>"
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


def _verdicts(claims: pd.DataFrame, exact_head: str | None, training: str = "", grown: Results | None = None,
              results: Results | None = None) -> str:  # fmt: skip
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
        elif row.rule == verdict_rule.PAIRED_EXACT:
            number = "–" if pd.isna(row.mean) else f"{100 * row.mean:+.0f} pts of runs fit"
            interval = "exact test"
            rule = row.rule
            details = "; ".join(part for part in (row.detail, row.note) if part)
            seeds = "–" if pd.isna(row.n_seeds) else f"{row.n_seeds} ({row.n_pairs} pairs)"
        else:
            scale, unit = _unit(row.metric)
            number = "–" if pd.isna(row.mean) else f"{scale * row.mean:+.1f} {unit}"
            interval = ("–" if pd.isna(row.mean)
                        else _interval(row.ci_low_adjusted, row.ci_high_adjusted, row.n_seeds, scale))  # fmt: skip
            chosen = " (chosen after the runs)" if row.margin_chosen_after else ""
            rule = "–" if row.verdict == NOT_TESTED else f"{row.rule}, ±{scale * row.margin:g} {unit}{chosen}"
            details = row.note
            seeds = "–" if pd.isna(row.n_seeds) else f"{row.n_seeds} ({row.n_pairs} pairs)"
        resolved = f"<td class='text'>{html.escape(row.sequence or '–')}</td>" if grown is not None else ""
        rows.append(
            f"<tr><td class='text'>{html.escape(row.claim)}</td><td class='word-cell'>{word}</td>{resolved}"
            f"<td class='text'>{html.escape(rule)}</td><td>{number}</td><td>{html.escape(interval)}</td>"
            f"<td>{html.escape(seeds)}</td><td class='text'>{html.escape(details)}</td></tr>"
        )
    confidence = claims["confidence_adjusted"].dropna()
    level = f"{confidence.iloc[0]:.2%} CI" if len(confidence) else "CI"
    if grown is not None:  # each claim's interval is at its closing look's nominal level
        level = "CI at the look"
    resolved_head = "<th class='text'>Resolved at</th>" if grown is not None else ""
    table = (
        f"<table class='verdicts'><tr><th class='text'>Claim</th><th class='text'>Verdict</th>{resolved_head}"
        f"<th class='text'>Rule, margin</th><th>Difference</th><th>{html.escape(level)} (adjusted)</th>"
        "<th>Seeds</th><th class='text'>Details</th></tr>"
        + "".join(rows) + "</table>"
    )
    counts = claims["verdict"].value_counts()
    tally = ", ".join(f"{counts[word]} {word}" for word in (*WORD_CLASS, NOT_TESTED) if word in counts)
    lead = f"<p class='lead'>{html.escape(words.count(len(claims), 'claim'))} checked: {html.escape(tally)}.</p>"
    if grown is not None:
        family = (f"<p><strong>{html.escape(words.spend_text(grown))}</strong></p>"
                  f"<p>{html.escape(words.sequence_family_text(grown.sequence))}</p>")  # fmt: skip
    else:
        family = f"<p>{html.escape(words.family_text(claims, results))}</p>"
    if grown is not None and words.weakened_text(grown):
        family += f"<p>{html.escape(words.weakened_text(grown))}</p>"
    if training:
        family += f"<p><strong>Runs whose training failed.</strong> {html.escape(training)}</p>"
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
        return words.sequence_family_text(results.sequence)
    return words.family_text(claims, results)


TRAINING_COLUMNS = ((FIT, "fit"), (STALLED, "stalled"), (UNDERFIT, "under-fitted"), (DIVERGED, "diverged"),
                    (MISSING, "missing (not the method's doing)"))  # fmt: skip


def _trainability(results: Results) -> str:
    """Per variant: how its runs' training went (judge.load's statuses), and the share that did not fit."""
    runs = results.runs
    if runs.empty:
        return "<p class='note'>(no finished runs yet)</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ("Variant", "Did not fit", *(t for _, t in TRAINING_COLUMNS)))
    rows = []
    for name, group in tables.variant_groups(results, runs):
        counts = group["training"].value_counts()
        launched = int((group["training"] != MISSING).sum())
        failed = launched - int(counts.get(FIT, 0))
        cells = [f"<td>{html.escape(str(name))}</td>", f"<td>{failed} of {launched} seeds</td>"]
        cells += [f"<td>{int(counts.get(status, 0))}</td>" for status, _ in TRAINING_COLUMNS]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table><tr>{head}</tr>{''.join(rows)}</table><p class='note'>Decided per run from training data alone "
        f"(the criterion: {html.escape(words.criterion_text())}; stalled: final training accuracy ≤ chance + "
        f"{100 * STALL_MARGIN:g} points). Per run: the <code>training</code> column of "
        "<a href='results.csv'>results.csv</a>. The trainability claims above test GAP's share against each other "
        "head's.</p>"
    )


SENSITIVITY_HEADERS = {"claim": "Claim", "runs_left_out": "Runs left out", "n_seeds": "Seeds", "n_pairs": "Pairs"}


def _sensitivity(frame: pd.DataFrame | None) -> str:
    """The analysis without failed runs: numbers only, no verdict words, apart from the verdicts."""
    lead = f"<p>{html.escape(words.SENSITIVITY_TEXT)}</p>"
    if frame is None or frame.empty:
        return lead + "<p class='note'>No claim's pairs hold a run whose training failed: nothing to leave out.</p>"
    rows = []
    for row in frame.itertuples():
        scale, unit = _unit(row.metric)
        without = "–" if pd.isna(row.mean) else f"{scale * row.mean:+.1f} {unit}"
        interval = _interval(row.ci_low_adjusted, row.ci_high_adjusted, row.n_seeds, scale)
        every = "–" if pd.isna(row.mean_all_runs) else f"{scale * row.mean_all_runs:+.1f} {unit}"
        seeds = "0" if pd.isna(row.n_seeds) else str(row.n_seeds)
        rows.append(f"<tr><td class='text'>{html.escape(row.claim)}</td><td>{row.runs_left_out}</td>"
                    f"<td>{html.escape(seeds)}</td><td>{html.escape(without)}</td><td>{html.escape(interval)}</td>"
                    f"<td>{html.escape(every)}</td></tr>")  # fmt: skip
    level = f"{frame['confidence_adjusted'].iloc[0]:.2%}"
    return lead + (
        "<table class='verdicts'><tr><th class='text'>Claim</th><th>Runs left out</th><th>Seeds left</th>"
        f"<th>Difference without them</th><th>{level} CI without them</th><th>Difference with every run</th></tr>"
        + "".join(rows) + "</table><p class='note'>Full table: <a href='sensitivity.csv'>sensitivity.csv</a>. A seed "
        "left with no pair at some setting leaves whole, so few or no seeds may remain.</p>"
    )


EFFECT_HEADERS = {"axis": "Axis", "level_a": "Level A", "level_b": "Level B", "subset": "Where", "metric": "Outcome",
                  "mean_diff": "A − B (mean over seeds)", "std_diff": "SD over seeds", "n_pairs": "Pairs",
                  "n_seeds": "Seeds", "seeds_left_out": "Seeds left out (missing runs)", "ci_low": "95% CI low",
                  "ci_high": "95% CI high", "pairs_failed_training": "Pairs with failed training (kept)",
                  "confounded_with": "Confounded with"}  # fmt: skip


def _readable_effects(effects: pd.DataFrame) -> pd.DataFrame:
    """The effects table as the page shows it: readable headers and outcome names, unadjusted CIs; the flags the
    sentences already say (interval notes, zero crossings, unpaired counts) stay in effects.csv."""
    frame = effects[[c for c in EFFECT_HEADERS if c in effects]].copy()
    frame["metric"] = frame["metric"].map(lambda m: words.METRIC_NAMES.get(m, m))
    return frame.rename(columns=EFFECT_HEADERS)


def _unit(metric: str) -> tuple[float, str]:
    """A difference's scale and short unit in the page's tables: points, epochs, or log-% (100 × ln ratio)."""
    scale, unit = words.UNITS.get(metric, words.DEFAULT_UNIT)
    return scale, {"points": "pts", "epochs": "epochs"}.get(unit, "log-%")


def _margins_text(margins: dict[str, float]) -> str:
    return ", ".join(f"{metric} {value:g}" for metric, value in margins.items())


def _interval(low: float, high: float, n: Any, scale: float = 100.0) -> str:
    if pd.isna(low):
        return FEW if pd.notna(n) and n < MIN_INTERVAL_N else "–"
    return f"{scale * low:+.1f} to {scale * high:+.1f}"


def _summary(results: Results, summary: pd.DataFrame) -> str:
    """The columns people compare, readable labels first, best NiN value per column in bold."""
    frame = tables.ablation_frame(results, summary)
    if frame.empty:
        return "<p class='note'>(no finished runs yet)</p>"
    bold = tables.best(frame)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in (*tables.HEADERS, "n", "did not fit", "missing"))
    rows = []
    for i, row in frame.iterrows():
        texts = tables.cells(row, "md")
        cells = [f"<td>{html.escape(str(row['variant']))}</td>"]
        for column, text in texts.items():
            text = html.escape(text)
            cells.append(f"<td><strong>{text}</strong></td>" if bold.loc[i, column] else f"<td>{text}</td>")
        cells += [f"<td>{int(row[c])}</td>" for c in ("n", "did_not_fit", "missing")]
        first_reference = row["reference"] and not frame["reference"].iloc[:i].any()
        rows.append(f"<tr{' class=reference' if first_reference else ''}>" + "".join(cells) + "</tr>")
    return (
        f"<table><tr>{head}</tr>{''.join(rows)}</table><p class='note'>Mean ± sd (n runs) over seeds, every run "
        "that ended, failed training included; missing runs are counted, not averaged. Bold: best NiN variant per "
        "column. Every column, with 95% "
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
