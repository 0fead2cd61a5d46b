"""A results directory → tables, statistics, plots and one HTML page, in OUT/<grid>/report/.

    from reports import write_report
    report = write_report("runs/quick")   # report.html, report.tables["summary"], report.plots["effects"], ...

Reads result files only; importing it never imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from judge.load import Results, load_results
from nin.layout import GridDir

__all__ = ["Report", "Results", "ablation_table", "load_results", "write_report"]


@dataclass(frozen=True)
class Report:
    """What write_report wrote: paths for whatever publishes it next (W&B), and the sentences it states.

    A Report is path-like: os.fspath(report) is report.html.
    """

    html: Path
    tables: dict[str, Path]  # CSV files: results, summary, effects, verdicts, sensitivity
    plots: dict[str, Path]
    sentences: list[str] = field(default_factory=list)  # the verdicts first, then one per effect
    done: str = ""
    verdicts: dict[str, str] = field(default_factory=dict)  # claim key -> supported | contradicted | ...
    documents: dict[str, Path] = field(default_factory=dict)  # the ablation table: md, tex
    spent: dict[str, object] = field(default_factory=dict)  # a grid grown by --until-resolved: sequential.spent

    def __fspath__(self) -> str:
        return os.fspath(self.html)


TABLE_FORMATS = ("md", "tex")
BEST_TEST_COLUMN = "best_test_acc_picked_on_test"  # results.csv's name for result.json's best_test_acc


def write_report(grid_dir: str | Path, margins: dict[str, float] | None = None) -> Report:
    """Write OUT/<grid>/report/: results.csv, summary.csv, effects.csv, verdicts.csv, sensitivity.csv, ablation.md,
    ablation.tex,
    plots/*.png (plots/cam.png when runs kept class maps) and report.html.

    `margins` ({metric: δ}, from --margin) override the grid's for this report. Raises InputError when grid_dir is
    not a results directory. A partial grid reports what exists.
    """
    from judge import sequential, stats, verdicts
    from reports import cam_figure, html, plots, tables, words

    results = load_results(grid_dir)
    out = GridDir(results.grid_dir).report
    out.mkdir(parents=True, exist_ok=True)
    summary = stats.summarize(results)
    effects = stats.effects(results)
    found = sequential.report_verdicts(results, margins)
    claims = words.table(found)
    sensitivity = words.sensitivity_table(verdicts.sensitivity(results, margins))
    names = ("results", "summary", "effects", "verdicts", "sensitivity")
    csvs = {name: out / f"{name}.csv" for name in names}
    # best_test_acc picks its epoch on the test set: kept (a result.json contract) but named for what it is.
    results.runs.rename(columns={"best_test_acc": BEST_TEST_COLUMN}).to_csv(csvs["results"], index=False)
    summary.to_csv(csvs["summary"], index=False)
    effects.to_csv(csvs["effects"], index=False)
    words.csv_frame(claims).to_csv(csvs["verdicts"], index=False)
    sensitivity[list(words.SENSITIVITY_CSV_COLUMNS)].to_csv(csvs["sensitivity"], index=False)
    documents = {fmt: out / f"ablation.{fmt}" for fmt in TABLE_FORMATS}
    documents["md"].write_text(tables.ablation_markdown(results, summary, claims), encoding="utf-8")
    documents["tex"].write_text(tables.ablation_latex(results, summary, claims), encoding="ascii")
    plot_paths = plots.write_plots(results, summary, effects, out / "plots")
    cam = cam_figure.write_cam_figure(results, out / "plots")
    if cam is not None:
        plot_paths[cam_figure.CAM_PLOT] = cam
    exact = words.exact_head_note(verdicts.exact_head(results))
    sentences = [*claims["sentence"], *([exact] if exact else []), *words.effect_sentences(effects)]
    page = out / "report.html"
    page.write_text(
        html.render(results, summary, effects, claims, exact, words.effect_sentences(effects), plot_paths, sensitivity),
        encoding="utf-8",
    )
    said = {v.key: v.verdict for v in found}
    spent = sequential.spent(results, found) if results.sequence is not None else {}
    return Report(page, csvs, plot_paths, sentences, results.done_line(), said, documents, spent)


def ablation_table(grid_dir: str | Path, fmt: str, margins: dict[str, float] | None = None) -> str:
    """The ablation table of a results directory and its verdicts as markdown ("md") or LaTeX ("tex"); writes
    nothing."""
    from judge import sequential, stats
    from reports import tables, words

    results = load_results(grid_dir)
    summary = stats.summarize(results)
    render = {"md": tables.ablation_markdown, "tex": tables.ablation_latex}[fmt]
    return render(results, summary, words.table(sequential.report_verdicts(results, margins)))
