"""The NiN paper's stopping rule (schedule "plateau"): its decisions, what a run records of how it ended, an exact
resume from a kill between two drops, and ids that do not move for grids that do not use it."""

from __future__ import annotations

import json

import pytest

from nin import layout
from nin.plateau import CAP, CRITERION, DROP, STOP, Plateau
from nin.train import train
from nin.variant import Variant
from runners.grid_yaml import SpecError
from runners.spec import parse_grid
from tests.nin.test_train import TINY, _StopAfter, read_metrics

TIMING = set(layout.METRICS_TIMING_KEYS)


def test_rule_drops_after_patience_then_stops_after_the_last_drop():
    rule = Plateau(monitor="train_acc", patience=2, min_delta=0.01, drops=1)
    # 0.5 best; 0.505 is within min_delta (no new best); two such epochs drop; a new best resets the count.
    events = [rule.update(v) for v in (0.5, 0.505, 0.5, 0.7, 0.69, 0.7, 0.71)]
    assert events == [None, None, DROP, None, None, STOP, None]
    assert rule.best == 0.7 and rule.drops_done == 1


def test_loss_monitor_improves_downwards():
    rule = Plateau(monitor="val_loss", patience=1, min_delta=0.0, drops=0)
    assert [rule.update(v) for v in (1.0, 0.9, 0.95)] == [None, None, STOP]


# Accuracy can never beat its best by more than 1: every epoch after the first is "no improvement", so with
# patience 2 the rate drops after epochs 3 and 5 and the run stops after epoch 7, whatever the data do.
STRUCTURAL = dict(
    TINY, train_size=100, test_size=50, schedule="plateau", monitor="train_acc", min_delta=1.0, patience=2, drops=2,
    epochs=12,
)


def test_run_records_how_it_ended(tmp_path):
    variant = Variant(**STRUCTURAL)
    result = train(variant, tmp_path / "r", device="cpu", progress=False)
    rows = read_metrics(tmp_path / "r")
    assert result["stop_reason"] == CRITERION and result["epochs_done"] == 7 == len(rows)
    assert result["lr_drop_epochs"] == [3, 5] and result["lr_drops"] == 2
    assert result["train_images"] == 7 * result["n_train"]
    # How busy the machine was (Linux has a load average): each epoch's, and the run's highest, beside the cores.
    assert all(row["load_avg"] >= 0 for row in rows) and result["load_avg_max"] == max(r["load_avg"] for r in rows)
    assert result["cpu_count"] >= 1
    lrs = [row["lr"] for row in rows]
    assert lrs == pytest.approx([0.05] * 3 + [0.005] * 2 + [0.0005] * 2)
    assert [row.get("lr_drop", False) for row in rows] == [False, False, True, False, True, False, False]
    assert rows[-1]["stop"] == CRITERION and not any("stop" in row for row in rows[:-1])
    assert "gap_acc" in rows[-1] and result["train_acc"] is not None  # the train-set pass runs where the rule ended


def test_cap_ends_a_run_that_keeps_improving(tmp_path):
    variant = Variant(**{**STRUCTURAL, "patience": 50, "epochs": 2})
    result = train(variant, tmp_path / "r", device="cpu", progress=False)
    assert result["stop_reason"] == CAP and result["epochs_done"] == 2 and result["lr_drops"] == 0


def test_kill_between_two_drops_resumes_to_the_same_run(tmp_path):
    variant = Variant(**STRUCTURAL, dropout=True, augment=True)
    straight = train(variant, tmp_path / "straight", device="cpu", progress=False)
    # Killed after epoch 4: one drop done, one epoch into the second plateau (the rule's count is 1).
    with pytest.raises(KeyboardInterrupt):
        train(variant, tmp_path / "resumed", device="cpu", progress=False, tracker=_StopAfter(4))
    assert len(read_metrics(tmp_path / "resumed")) == 4
    resumed = train(variant, tmp_path / "resumed", device="cpu", progress=False, log=lambda *_: None)
    for key in ("stop_reason", "lr_drop_epochs", "epochs_done", "train_acc", "test_acc", "train_loss", "test_loss"):
        assert resumed[key] == straight[key], key
    assert [{k: v for k, v in row.items() if k not in TIMING} for row in read_metrics(tmp_path / "resumed")] == [
        {k: v for k, v in row.items() if k not in TIMING} for row in read_metrics(tmp_path / "straight")
    ]


def test_kill_after_the_stopping_epoch_trains_no_further(tmp_path):
    variant = Variant(**STRUCTURAL)
    with pytest.raises(KeyboardInterrupt):
        train(variant, tmp_path / "r", device="cpu", progress=False, tracker=_StopAfter(7))
    result = train(variant, tmp_path / "r", device="cpu", progress=False, log=lambda *_: None)
    assert result["epochs_done"] == 7 and result["stop_reason"] == CRITERION


def test_fixed_budget_runs_say_so_and_keep_their_ids():
    plain = Variant(**TINY, epochs=3)
    assert not {"monitor", "patience", "min_delta", "drops"} & set(plain.config())
    # The id of this config before the plateau keys existed (commit 6f569d5).
    assert Variant(**TINY, epochs=3).id == PINNED_ID
    plateau = Variant(**TINY, epochs=3, schedule="plateau")
    assert plateau.config()["patience"] == 3 and plateau.id != plain.id
    assert Variant(**TINY, epochs=3, schedule="plateau", patience=3).id == plateau.id  # a default spelled out


PINNED_ID = "cifar-fc-cccp2-do1-w0.125-s0-e7d2fc"


@pytest.mark.parametrize(
    "settings, message",
    [
        ("{patience: 3}", "patience applies to schedule plateau only"),
        ("{schedule: plateau, patience: 0}", "patience"),
        ("{schedule: plateau, monitor: test_acc}", "monitor"),
        ("{schedule: plateau, monitor: val_loss}", "needs a validation split"),
        ("{schedule: plateau, drops: -1}", "drops"),
        ("{schedule: plateau, min_delta: 2}", "min_delta"),
    ],
)
def test_bad_plateau_settings_are_one_line(settings, message):
    text = f"name: g\nsettings: {settings}\naxes: {{head: [gap, fc]}}\n"
    with pytest.raises(SpecError, match=message) as caught:
        parse_grid(text, source="g.yaml")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("g.yaml:2")


def test_report_shows_how_each_variant_ended(tmp_path):
    from reports import load_results, write_report
    from reports.tables import ending_frame
    from tests.reports_fixtures import result, write_grid

    runs = []
    for seed in range(3):
        for head, reason, drops in (("gap", CRITERION, [3, 5]), ("fc", CAP, [4])):
            run = result(0.9, 0.95, head=head, seed=seed, schedule="plateau", epochs=7)
            run.update(stop_reason=reason, lr_drops=len(drops), lr_drop_epochs=drops, train_images=7 * 500)
            runs.append(run)
    grid = write_grid(tmp_path, "ended", runs, axes={"head": ["gap", "fc"]})
    for run in runs:  # the epoch rows nin.train marks
        path = grid / "runs" / run["variant_id"] / layout.METRICS_FILE
        rows = layout.read_metrics(path)
        for row in rows:
            row["lr_drop"] = row["epoch"] in run["lr_drop_epochs"]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    loaded = load_results(grid)
    assert sorted(loaded.runs["lr_drop_epochs"]) == ["3 5"] * 3 + ["4"] * 3  # one text cell in results.csv
    ending = ending_frame(loaded).set_index("Variant")
    assert list(ending.index) == ["GAP", "FC"]  # the summary table's names, in the grid file's axis order
    assert ending.loc["GAP", "Stopped by"] == "criterion 3" and ending.loc["FC", "Stopped by"] == "cap 3"
    assert ending.loc["GAP", "LR drops after epoch"] == "3 5; 3 5; 3 5"
    report = write_report(grid)
    assert report.plots["epochs_to_stop"].is_file()
    page = report.html.read_text()
    assert "How training ended" in page and "criterion 3" in page
    csv = (grid / "report" / "results.csv").read_text().splitlines()
    assert {"stop_reason", "lr_drop_epochs", "train_images"} <= set(csv[0].split(","))


def test_cli_refuses_a_bad_stopping_rule_in_one_line_and_writes_nothing(tmp_path):
    from tests.conftest import run_cli
    from tests.reliability.helpers import assert_nothing_written, assert_one_clear_line

    grid = tmp_path / "g.yaml"
    settings = "{dataset: synthetic, schedule: plateau, patience: 0}"
    grid.write_text(f"name: g\nsettings: {settings}\naxes: {{head: [gap, fc]}}\n")
    out = tmp_path / "out"
    done = run_cli("run", str(grid), "--out", str(out), "--wandb", "disabled", "--device", "cpu", "--no-progress")
    assert done.returncode == 2
    assert_one_clear_line(done.stderr, "patience")
    assert_nothing_written(out)
    # An override too: the key is checked with the grid's rows.
    done = run_cli("run", str(grid), "--set", "patience=3", "--set", "monitor=val_loss", "--out", str(out))
    assert done.returncode == 2
    assert_one_clear_line(done.stderr, "validation split")
    assert_nothing_written(out)
