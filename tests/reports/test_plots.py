"""reports/plots.py: every figure is written as a real PNG, also when there is little or nothing to draw, and what
write_plots returns names exactly the files it wrote.

Covered elsewhere, not repeated here: the full paper grid's plots (tests/reports/test_reports.py,
test_plots_are_png_files) and the effects axis not stretched by a mean without an interval
(tests/reports/test_reports.py).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from judge.stats import TIME_METRICS, effects, summarize
from reports import load_results
from reports.plots import PLOT_NAMES, effect_plot, gap_bars, learning_curves, write_plots
from tests.reports_fixtures import result, write_grid

SEEDS = 3


def _one_axis() -> list[dict]:
    # Only the head varies: gap and fc at cccp 2, three seeds each.
    return [result(0.80 + 0.01 * s + (0.02 if head == "gap" else 0), 0.85 + 0.01 * s, head=head, seed=s)
            for head in ("gap", "fc") for s in range(SEEDS)]  # fmt: skip


def _partial() -> list[dict]:
    return [result(0.80, 0.84, head="gap", seed=0)]


def _nothing_finished() -> list[dict]:
    return [result(0.1, 0.1, status="diverged", head=head, seed=0) for head in ("gap", "fc")]


GRIDS = {"one_axis": _one_axis, "partial": _partial, "nothing_finished": _nothing_finished}


def _write(tmp_path: Path, name: str) -> tuple:
    runs = GRIDS[name]()
    expected = [r["variant_id"] for r in runs] + (["d2l-fc-cccp2-do1-lr0.1-s0", "later"] if name == "partial" else [])
    results = load_results(write_grid(tmp_path, name, runs, expected=expected, axes={"head": ["gap", "fc"]}))
    return results, summarize(results), effects(results)


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()  # the whole file decodes: not just a PNG signature on a torn file
    with Image.open(path) as image:
        image.load()
        return image.size


@pytest.mark.parametrize("name", list(GRIDS))
def test_every_plot_is_a_png_and_the_return_names_what_was_written(tmp_path: Path, name: str) -> None:
    results, summary, effect_rows = _write(tmp_path, name)
    plot_dir = tmp_path / "report" / "plots"  # made by write_plots
    paths = write_plots(results, summary, effect_rows, plot_dir)
    assert list(paths) == list(PLOT_NAMES)
    assert {path.name for path in paths.values()} == {p.name for p in plot_dir.iterdir()}  # nothing else
    for plot, path in paths.items():
        assert path == plot_dir / f"{plot}.png"
        width, height = _png_size(path)
        assert width > 100 and height > 100, plot


def test_an_empty_effects_table_draws_a_message_not_an_axis(tmp_path: Path) -> None:
    results, _, effect_rows = _write(tmp_path, "partial")
    assert effect_rows.empty  # one run: no axis with two levels
    figure = effect_plot(effect_rows)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 1
    assert [text.get_text() for text in visible[0].texts] == ["no axis with two levels among the NiN runs"]
    figure.savefig(tmp_path / "effects.png")
    _png_size(tmp_path / "effects.png")


def test_an_effects_table_with_only_columns_is_drawn_too(tmp_path: Path) -> None:
    # A table read back from an empty effects.csv has its columns and no rows.
    results, _, effect_rows = _write(tmp_path, "one_axis")
    figure = effect_plot(effect_rows.iloc[0:0])
    assert any("no axis with two levels" in t.get_text() for ax in figure.axes for t in ax.texts)


def test_one_axis_draws_one_effect_per_metric_and_one_panel_per_head(tmp_path: Path) -> None:
    results, summary, effect_rows = _write(tmp_path, "one_axis")
    # Training time (epochs, log seconds) is in the effects table but not in this accuracy-points figure.
    metrics = [m for m in pd.unique(effect_rows["metric"]) if m not in TIME_METRICS]
    assert metrics == ["test_acc", "gap_acc"]
    figure = effect_plot(effect_rows)
    assert len(figure.axes) == len(metrics)
    assert [tick.get_text() for tick in figure.axes[0].get_yticklabels()] == ["head: gap vs fc"]
    # Learning curves: one panel per head × cccp (2 × 1), one train and one test line per run, plus the eval-mode
    # train point of each run's last epoch.
    curves = learning_curves(results)
    panels = [ax for ax in curves.axes if ax.get_visible()]
    assert sorted(ax.get_title() for ax in panels) == ["head fc · cccp 2", "head gap · cccp 2"]
    assert [len(ax.lines) for ax in panels] == [3 * SEEDS, 3 * SEEDS]
    # Gap bars: one per variant.
    (bars_ax,) = gap_bars(summary).axes
    assert len(bars_ax.patches) == len(summary) == 2
