"""A results directory → tables, statistics, plots and one HTML page, in OUT/<grid>/report/.

    from reports import write_report
    report = write_report("runs/quick")   # report.html, report.tables["summary"], report.plots["effects"], ...

Reads result files only; importing it never imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nin.layout import GridDir
from reports.load import Results, load_results

__all__ = ["Report", "Results", "load_results", "write_report"]


@dataclass(frozen=True)
class Report:
    """What write_report wrote: paths for whatever publishes it next (W&B), and the sentences it states.

    A Report is path-like: os.fspath(report) is report.html.
    """

    html: Path
    tables: dict[str, Path]
    plots: dict[str, Path]
    sentences: list[str] = field(default_factory=list)
    done: str = ""

    def __fspath__(self) -> str:
        return os.fspath(self.html)


def write_report(grid_dir: str | Path) -> Report:
    """Write OUT/<grid>/report/: results.csv, summary.csv, effects.csv, plots/*.png and report.html.

    Raises InputError when grid_dir is not a results directory. A partial grid reports what exists.
    """
    from reports import html, plots, stats

    results = load_results(grid_dir)
    out = GridDir(results.grid_dir).report
    out.mkdir(parents=True, exist_ok=True)
    summary = stats.summarize(results)
    effects = stats.effects(results)
    tables = {"results": out / "results.csv", "summary": out / "summary.csv", "effects": out / "effects.csv"}
    results.runs.to_csv(tables["results"], index=False)
    summary.to_csv(tables["summary"], index=False)
    effects.to_csv(tables["effects"], index=False)
    plot_paths = plots.write_plots(results, summary, effects, out / "plots")
    sentences = stats.sentences(effects)
    page = out / "report.html"
    page.write_text(html.render(results, summary, effects, sentences, plot_paths), encoding="utf-8")
    return Report(page, tables, plot_paths, sentences, results.done_line())
