"""The report of a grid with `tune:` says how each arm was trained: the method line with the validation split's size,
the pick per arm, the arms still at an edge, and plots/tuning.png. tuning.json comes from the real runner, with the
stand-in trainer of tests/runners/test_tuning.py writing each run's scores; a grid without it gets no such section."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nin.layout import GridDir
from nin.variant import Variant
from reports import tuning as report_tuning
from reports import write_report
from tests.runners.test_tuning import BODY, HEAD, FakeTraining, grid_text, peak_at, run_fake, write

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTION = "<h2>How each arm was trained</h2>"


def _page(report) -> str:
    return report.html.read_text(encoding="utf-8")


def test_the_section_shows_each_pick_the_edge_and_the_method_line_with_n(tmp_path, monkeypatch) -> None:
    spec = write(tmp_path, grid_text("tune: {lr: auto, seeds: [100, 101, 102], pick: val_acc, widen: 0}\n"))
    out = tmp_path / "o"
    assert run_fake(monkeypatch, spec, out, FakeTraining(peak_at({"gap": 0.01, "fc": 0.02}))) == 0
    grid_dir = GridDir(out / "tuned")
    record = json.loads(grid_dir.tuning_path.read_text())
    report = write_report(grid_dir.root)
    page = _page(report)

    # After the verdicts, before the summary; the method line names the hold-out's size from tuning.json.
    assert page.index("<h2>Verdicts</h2>") < page.index(SECTION) < page.index("<h2>Summary per variant")
    section = page[page.index(SECTION) : page.index("<h2>Class maps</h2>")]
    assert record["n_val"] == 20
    assert (
        "Each arm at its own lr, chosen on a validation split of 20 images; the test set was never used for "
        "selection." in section
    )
    assert "highest mean final-epoch val_acc over the tuning seeds 100, 101, 102" in section

    # One table row per arm, named as the report names its runs, with its pick; the GAP arm (widen 0) is at its low
    # edge, and the page says so with the runner's note.
    rows = {cells[0]: cells[1:] for cells in _rows(section)}
    labels = set(_loaded_labels(grid_dir.root))
    assert set(rows) == labels and len(rows) == 2
    gap = next(label for label in rows if label.startswith("gap"))
    assert rows[gap][0] == "0.01" and rows[gap][3] == "low: tune.widen is 0"
    assert rows["fc"][0] == "0.02" and rows["fc"][3] == "–"
    assert rows["fc"][2] == "90.0% (± 0.0 pts)"  # the mean val_acc at the pick, over the 3 seeds
    assert "1 arm(s) picked at an edge of their candidates" in section
    assert f"{gap}: lr 0.01 is the low edge of 0.01–0.04 (tune.widen is 0)" in section

    # The plot is a PNG, shown once (in the section, not again among the plots) and handed on to W&B.
    plot = report.plots[report_tuning.TUNING_PLOT]
    assert plot == grid_dir.report / "plots" / "tuning.png"
    assert plot.read_bytes().startswith(PNG_MAGIC)
    assert page.count("plots/tuning.png") == 1 and section.count("<img") == 1


def test_widenings_and_a_candidate_that_cannot_be_picked_are_shown(tmp_path, monkeypatch) -> None:
    spec = write(tmp_path, grid_text("tune: {lr: auto, seeds: [100], pick: val_loss, widen: 1}\n"))
    out = tmp_path / "o"

    def score(v: Variant) -> dict:
        if v.head == "gap" and v.lr == 0.04:
            return {"status": "diverged", "val_acc": None, "val_loss": None}
        loss = 1.0 - 0.1 * math.log2(v.lr / 0.01) if v.head == "fc" else 0.5 + abs(math.log2(v.lr / 0.02))
        return {"val_acc": 1 - loss, "val_loss": loss}

    assert run_fake(monkeypatch, spec, out, FakeTraining(score)) == 0
    report = write_report(out / "tuned")
    section = _page(report).split(SECTION)[1].split("<h2>")[0]
    rows = {cells[0]: cells[1:] for cells in _rows(section)}
    gap = next(label for label in rows if label.startswith("gap"))
    assert rows[gap][:2] == ["0.02", "0.01, 0.02, 0.04"]  # 0.04 diverged: not picked, no widening past it
    assert rows["fc"][:2] == ["0.08", "0.01, 0.02, 0.04, 0.08 (widened 1×)"]
    assert rows["fc"][3].startswith("high: widened 1 time(s)")
    assert "lowest mean final-epoch val_loss" in section and "at most 1 time(s)" in section
    assert report.plots[report_tuning.TUNING_PLOT].read_bytes().startswith(PNG_MAGIC)


def test_unfinished_tuning_says_so_and_shows_what_is_scored(tmp_path, monkeypatch) -> None:
    spec = write(tmp_path, grid_text("tune: {lr: [0.01, 0.02, 0.04], seeds: [100], pick: val_loss, widen: 0}\n"))
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        run_fake(monkeypatch, spec, out, FakeTraining(peak_at({"gap": 0.02, "fc": 0.02}), stop_after=4))
    report = write_report(out / "tuned")
    section = _page(report).split(SECTION)[1].split("<h2>")[0]
    # tuning.json is written before each round of tuning runs: it still counts all 6 as to train, and the
    # hold-out's size is not known before a tuning run has finished.
    assert "Tuning is not finished" in section and "6 tuning run(s) were still to train" in section
    assert "chosen on a validation split of 20% of the training images;" in section
    assert all(cells[1].startswith("pending") for cells in _rows(section))
    assert report.plots[report_tuning.TUNING_PLOT].read_bytes().startswith(PNG_MAGIC)


def test_a_grid_without_tuning_has_no_such_section_or_plot(tmp_path, monkeypatch) -> None:
    spec = write(tmp_path, HEAD + BODY)  # validation, no tune
    out = tmp_path / "o"
    assert run_fake(monkeypatch, spec, out, FakeTraining(peak_at({"gap": 0.02, "fc": 0.02}))) == 0
    report = write_report(out / "tuned")
    page = _page(report)
    assert "How each arm was trained" not in page and "chosen on a validation split" not in page
    assert report_tuning.TUNING_PLOT not in report.plots
    assert not (GridDir(out / "tuned").report / "plots" / "tuning.png").exists()


@pytest.mark.parametrize(
    "text", ["{not json", json.dumps({"tune": {"key": "lr"}, "arms": "garbage"})], ids=["not-json", "wrong-shape"]
)
def test_an_unreadable_tuning_json_is_named_and_the_report_still_written(tmp_path, monkeypatch, text) -> None:
    spec = write(tmp_path, grid_text())
    out = tmp_path / "o"
    assert run_fake(monkeypatch, spec, out, FakeTraining(peak_at({"gap": 0.02, "fc": 0.02}))) == 0
    grid_dir = GridDir(out / "tuned")
    grid_dir.tuning_path.write_text(text)
    report = write_report(grid_dir.root)
    section = _page(report).split(SECTION)[1].split("<h2>")[0]
    assert "tuning.json: unreadable" in section and "the picks are not shown" in section
    assert report_tuning.TUNING_PLOT not in report.plots


def _rows(section: str) -> list[list[str]]:
    """The table's body cells, unescaped."""
    import html

    table = section[section.index("<table>") : section.index("</table>")]
    rows = table.split("<tr")[2:]  # the header row first
    return [[html.unescape(cell.split("</td>")[0]) for cell in row.split("<td>")[1:]] for row in rows]


def _loaded_labels(grid_dir: Path) -> list[str]:
    from judge.load import load_results

    return list(load_results(grid_dir).runs["label"].unique())


# ---- the shipped grids --------------------------------------------------------------------------------------------


def test_fair_is_the_demo_grid_tuned_and_its_control_is_it_at_the_shared_lr() -> None:
    from runners import tuning
    from runners.spec import load_grid

    ablations = Path(__file__).resolve().parents[2] / "ablations"
    quick, fair, control = (
        load_grid(ablations / f"{name}.yaml", max_runs=None) for name in ("quick", "fair", "fair_control")
    )
    assert fair.tune is not None and control.tune is None
    assert fair.tune.candidates == (0.001, 0.002, 0.004) and fair.tune.pick == "val_loss"
    assert not set(fair.tune.seeds) & set(fair.seeds) and len(fair.tune.seeds) == 3 and len(fair.seeds) == 5

    # fair.yaml's arms are the demo grid's axis rows (its two include rows left out), held out on the same 10%.
    def row(v: Variant) -> str:
        return json.dumps(
            {k: x for k, x in v.config().items() if k not in ("seed", "lr", "validation")}, sort_keys=True
        )

    axis_rows = {row(v) for v in quick.variants if v.model == "nin" and not v.gap_relu}
    assert {row(a) for a in fair.arms} == axis_rows and len(axis_rows) == 12
    assert {a.validation for a in fair.arms} == {0.1} and {v.lr for v in quick.variants} == {0.002}

    # The control is fair.yaml's stage 2 with every arm at the shared lr, on the same seeds and the same split.
    at_shared_lr = {tuning.tuning_run(arm, "lr", 0.002, seed).id for arm in fair.arms for seed in fair.seeds}
    assert {v.id for v in control.variants} == at_shared_lr and len(at_shared_lr) == 60
