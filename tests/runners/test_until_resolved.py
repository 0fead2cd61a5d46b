"""`nin-ablate run --until-resolved` through the real runner: which variants get seeds, looks.json, the added runs
belonging to the grid, tuning seeds avoided, bad values, and a kill mid-look (tests/reliability style). With
`--executor ray`: tests/runners/test_runner.py's executor test grows a grid both ways."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from judge import sequential
from judge.verdicts import holds_sequence_open
from nin import layout, store
from nin.layout import GridDir
from nin.variant import Variant
from runners.cli import main
from runners.run import RunOptions, run_grid
from tests.conftest import REPO
from tests.reliability.helpers import (
    QUIET,
    assert_nothing_written,
    assert_one_clear_line,
    results,
    without_timing,
    write_grid,
)
from tests.reports_fixtures import without_wall_time
from tests.runners.test_tuning import FakeTraining

QUICK = REPO / "ablations" / "quick.yaml"


def jitter(variant: Variant, salt: str, size: float) -> float:
    """A fixed pseudo-random number in [−size, size] for this variant, seed and salt: the same on every machine."""
    digest = hashlib.sha256(f"{variant.group_id}/{variant.seed}/{salt}".encode()).digest()
    return size * (2 * int.from_bytes(digest[:4], "big") / 2**32 - 1)


TIMES = {"train_seconds": 60.0, "epochs_done": 10}  # every run alike: the training-time claims close as equivalent


def quick_outcomes(variant: Variant) -> dict:
    """On the quick grid: GAP 15 points above FC and 10 less overfitting, cccp 2 +10, dropout +5 and −5 overfitting,
    each with ±0.05-point noise (small enough that O'Brien-Fleming's strict first look at 3 seeds, a t interval at
    99.997% on 2 df, closes them whatever the draw); the AlexNet head equal to GAP on average but ±5 points by seed
    (one draw per head and seed, so it cancels in the cccp and dropout contrasts). Only the two GAP-vs-AlexNet claims
    stay open."""
    if variant.model == "alexnet":
        return {"test_acc": 0.6, "train_acc": 0.7, "gap_acc": 0.1, **TIMES}
    test = 0.6 + 0.15 * (variant.head == "gap") + 0.15 * (variant.head == "alexnet") + 0.1 * (variant.cccp == 2)
    test += 0.05 * variant.dropout + jitter(variant, "test", 0.0005)
    gap = 0.15 - 0.1 * (variant.head == "gap") - 0.1 * (variant.head == "alexnet") - 0.05 * variant.dropout
    gap += jitter(variant, "gap", 0.0005)
    if variant.head == "alexnet":
        by_seed = Variant.model_validate({**variant.config(), "cccp": 0, "dropout": False})
        test += jitter(by_seed, "alexnet-test", 0.05)
        gap += jitter(by_seed, "alexnet-gap", 0.05)
    return {"test_acc": test, "train_acc": test + gap, "gap_acc": gap, **TIMES}


def run_fake(monkeypatch, fake: FakeTraining, out: Path, spec: Path = QUICK, **options) -> int:
    monkeypatch.setattr("runners.run.run_local", fake)
    return run_grid(RunOptions(spec=spec, out=out, device="cpu", wandb="disabled", progress=False, **options))


def test_seeds_go_only_to_open_claims_and_the_added_runs_belong_to_the_grid(tmp_path, monkeypatch, capsys) -> None:
    out, grid_dir = tmp_path / "out", GridDir(tmp_path / "out" / "quick")
    fake = FakeTraining(quick_outcomes)
    code = run_fake(monkeypatch, fake, out, overrides=("seeds=3",), until_resolved=True, max_seeds=6)
    printed = capsys.readouterr().out
    assert code == 0, printed
    record = json.loads(grid_dir.looks_path.read_text())
    looks = record["looks"]
    assert [look["n_seeds"] for look in looks] == [3, 4, 5, 6] and record["design"]["schedule"] == [3, 4, 5, 6]
    alexnet_claims = ["gap_overfitting_vs_alexnet", "gap_accuracy_vs_alexnet"]
    holding = [k for k in looks[0]["open"] if holds_sequence_open(k)]  # trainability claims hold no sequence open
    assert holding == alexnet_claims and len(record["design"]["family"]) == 13
    assert all(c["closed_at"] == 1 for k, c in looks[-1]["claims"].items()
               if k not in alexnet_claims and holds_sequence_open(k))  # fmt: skip
    # The new seeds went to GAP and AlexNet-head variants (linear GAP, as the claims pair them) and nowhere else.
    templates = {v.group_id: v for v in fake.trained if v.seed == 0}
    added = {templates[g].head for look in looks for g in look["added_groups"]}
    assert added == {"gap", "alexnet"} and len(looks[0]["added_groups"]) == 8
    assert not any(templates[g].gap_relu for look in looks for g in look["added_groups"])
    assert [look["added_seeds"] for look in looks] == [[3], [4], [5], []]
    assert len(fake.trained) == 14 * 3 + 8 * 3 == len({v.id for v in fake.trained})  # none twice
    assert yaml.safe_load(grid_dir.spec_path.read_text())["variants"] == [v.id for v in fake.trained]
    assert printed.strip().splitlines()[-1] == (
        "grid 'quick': 9 of 13 claims resolved, 4 still open at 6 seeds; 66 runs trained against 84 for the fixed "
        "design at 6 seeds (14 variants × 6); stopped: 2 of 9 claims still open at 6 seeds (trainability and "
        "wall-time claims aside), the most this sequence plans (--max-seeds 6)"
    )
    assert "look 1 of at most 4 (3 seeds): 9 of 13 claims resolved; open: gap_overfitting_vs_alexnet" in printed

    # The report applies the sequential rule and says so; verdicts.csv has where each claim resolved.
    page = (grid_dir.report / "report.html").read_text()
    assert "Seeds spent: 66 runs trained against 84 for the fixed design at 6 seeds" in page
    assert "Seeds on demand (run --until-resolved): 4 looks at 3 to 6 seeds (1 more per look" in page
    frame = pd.read_csv(grid_dir.report / "verdicts.csv").set_index("claim")
    family = frame[frame["family_size"].notna()]
    assert family["resolved_at_seeds"].isna().sum() == 4 and (family["resolved_at_seeds"].dropna() == 3).all()
    assert family["sentence"].str.contains("sequential: ").all()

    # The W&B report run carries what was spent and where each claim resolved.
    from reports import write_report
    from reports.wandb_report import log_report
    from tests.wandb_records import offline_runs

    report = write_report(grid_dir.root)
    log_report(report.html.parent, "quick", "offline", tmp_path / "wb", report.tables, {}, verdicts=report.verdicts,
               spent=report.spent)  # fmt: skip
    (run,) = offline_runs(tmp_path / "wb")
    assert (run.summary["sequence/runs_trained"], run.summary["sequence/runs_fixed_design"]) == (66, 84)
    assert run.summary["resolved_at/cccp_2_vs_0_accuracy"] == 3
    assert run.summary["resolved_at/gap_accuracy_vs_alexnet"] == "open at 6 seeds"
    # `list` shows the added runs too.
    assert main(["list", str(QUICK), "--out", str(out), "--set", "seeds=3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 66

    # A plain run of the same grid file: every added run is part of the grid, nothing is stale or trained.
    again = FakeTraining(quick_outcomes)
    assert run_fake(monkeypatch, again, out, overrides=("seeds=3",)) == 0
    captured = capsys.readouterr()
    assert again.trained == [] and "earlier version" not in captured.err
    assert "all 66 runs of grid 'quick' are already finished" in captured.out
    # The same command again: the sequence is over, nothing is judged twice.
    assert run_fake(monkeypatch, again, out, overrides=("seeds=3",), until_resolved=True, max_seeds=6) == 0
    assert "the sequence already stopped at look 4" in capsys.readouterr().out and again.trained == []
    assert json.loads(grid_dir.looks_path.read_text()) == record
    # Another design mid-sequence is refused, as is the sequence of another version of the grid.
    assert main(["run", str(QUICK), "--out", str(out), "--set", "seeds=3", "--until-resolved", "--max-seeds", "7",
                 *QUIET]) == 2  # fmt: skip
    assert_one_clear_line(capsys.readouterr().err, "planned with --max-seeds 6 --seeds-per-round 1")
    assert main(["run", str(QUICK), "--out", str(out), "--set", "seeds=3", "--epochs", "9", "--until-resolved",
                 "--max-seeds", "6", *QUIET]) == 2  # fmt: skip
    assert_one_clear_line(capsys.readouterr().err, "another version of")


def test_a_tuned_grid_grows_on_new_seeds_that_skip_its_tuning_seeds(tmp_path, monkeypatch, capsys) -> None:
    spec = write_grid(tmp_path / "tuned.yaml", "axes: {head: [gap, fc], dropout: [true, false]}\nseeds: 3\n"
                      "validation: 0.2\ntune: {lr: auto, seeds: [3, 4], pick: val_loss, widen: 0}\n",
                      name="tuned")  # fmt: skip

    def outcomes(variant: Variant) -> dict:  # no effect and ±5 points by run: every claim stays open
        test = 0.6 + jitter(variant, "test", 0.05)
        gap = 0.1 + jitter(variant, "gap", 0.05)
        return {"test_acc": test, "train_acc": test + gap, "gap_acc": gap, "val_loss": 1 + abs(variant.lr - 0.05)}

    fake = FakeTraining(outcomes)
    assert run_fake(monkeypatch, fake, tmp_path / "out", spec, until_resolved=True, max_seeds=5) == 0, capsys
    looks = json.loads((tmp_path / "out" / "tuned" / layout.LOOKS_FILE).read_text())["looks"]
    assert [look["added_seeds"] for look in looks] == [[5], [6], []]
    stage_2 = [v for v in fake.trained if v.seed not in (3, 4)]
    assert sorted({v.seed for v in stage_2}) == [0, 1, 2, 5, 6]
    assert {v.lr for v in stage_2} == {0.05}  # the pick (val_loss lowest at lr 0.05), on the added seeds too
    assert json.loads((tmp_path / "out" / "tuned" / layout.LOOKS_FILE).read_text())["reserved_seeds"] == [3, 4]
    # `list` shows the grid's runs now (runners.grid_runs.current): its picked runs and the seeds the looks added.
    capsys.readouterr()
    assert main(["list", str(spec), "--out", str(tmp_path / "out"), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(r["variant_id"] for r in listed if r["stage"] == "grid") == sorted(v.id for v in stage_2)


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--until-resolved", "--max-seeds", "0"], ["--max-seeds", "positive integer"]),
        (["--until-resolved", "--max-seeds", "2.5"], ["--max-seeds", "positive integer"]),
        (["--until-resolved", "--seeds-per-round", "0"], ["--seeds-per-round", "positive integer"]),
        (["--until-resolved", "--max-seeds", "2"], ["--max-seeds 2", "below the 3 seeds", "at least 3"]),
        (["--until-resolved", "--max-seeds", "21"], ["--max-seeds 21", "at most 20"]),
        (["--max-seeds", "6"], ["--max-seeds", "add --until-resolved"]),
        (["--seeds-per-round", "2"], ["--seeds-per-round", "add --until-resolved"]),
    ],
)
def test_bad_sequence_values_are_one_line_and_write_nothing(tmp_path, capsys, flags, words) -> None:
    spec = write_grid(tmp_path / "g.yaml", "axes: {dropout: [true, false]}\nseeds: 3\n")
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), *flags, *QUIET]) == 2
    assert_one_clear_line(capsys.readouterr().err, *words)
    assert_nothing_written(out)


def test_a_grid_with_no_difference_claim_to_test_is_refused(tmp_path, capsys) -> None:
    spec = write_grid(tmp_path / "g.yaml", "axes: {cccp: [2]}\nseeds: 3\n")  # one NiN variant: nothing to compare
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), "--until-resolved", *QUIET]) == 2
    assert_one_clear_line(capsys.readouterr().err, str(spec), "--until-resolved", "tests none")
    assert_nothing_written(out)


# ---- real training: killed mid-look, resumed, equal to an uninterrupted run ------------------------------------------
DIGITS = ("{arch: cifar, width: 0.125, dataset: digits, image_size: 16, train_size: 300, batch_size: 50, epochs: 2, "
          "optimizer: adamw, lr: 0.005, precision: fp32, gap_relu: false}")  # fmt: skip
SMALL = ("axes: {head: [gap, fc], dropout: [true, false]}\ninclude: [{head: gap, dropout: true, gap_relu: true}]\n"
         "seeds: 2\n")
# 5 variants × 2 seeds × 2 epochs = 20 checkpoints before look 1, which adds seed 2 to the 4 axis variants (the ReLU
# row pairs with nothing): killed inside the 22nd, the first added run has its epoch-1 checkpoint and no result.
# Look 2, at 3 seeds, is the last.
KILL_MID_LOOK = "checkpoint:22"


def sequence_cli(spec: Path, out: Path, *extra: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(store.TEST_KILL_ENV, None)
    if kill_at:
        env[store.TEST_KILL_ENV] = kill_at
    # One thread per run, as a Ray task has: sums in the same order, so that every executor's results are equal.
    argv = [sys.executable, "-m", "runners", "run", str(spec), "--out", str(out), "--until-resolved", "--max-seeds",
            "3", "--cpu-threads", "1", *QUIET, *extra]  # fmt: skip
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def finished_files(grid: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in grid.glob("runs/*/result.json")}


def test_killed_mid_look_and_rerun_gives_the_verdicts_of_an_uninterrupted_run(tmp_path) -> None:
    spec = write_grid(tmp_path / "g.yaml", SMALL, name="seq", settings=DIGITS)
    reference = sequence_cli(spec, tmp_path / "ref")
    assert reference.returncode == 0, reference.stderr
    ref = tmp_path / "ref" / "seq"
    ref_looks = json.loads((ref / layout.LOOKS_FILE).read_text())
    assert ref_looks["looks"][0]["added_seeds"] == [2] and len(ref_looks["looks"][0]["added_groups"]) == 4

    out, grid = tmp_path / "out", tmp_path / "out" / "seq"
    killed = sequence_cli(spec, out, kill_at=KILL_MID_LOOK)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    looks = json.loads((grid / layout.LOOKS_FILE).read_text())["looks"]
    assert len(looks) == 1 and looks[0]["decision"] == sequential.ADD  # look 1 on record, its seed being trained
    assert len(results(grid)) == 10  # the base seeds; the added run killed before its result
    before = finished_files(grid)

    # Resumed, and killed again inside the write of look 2 (the temp file complete, never renamed).
    again = sequence_cli(spec, out, kill_at="looks:1")
    assert again.returncode == -signal.SIGKILL, again.stderr
    assert "resuming after epoch 1" in again.stdout + again.stderr and "look 1 " not in again.stdout
    assert len(json.loads((grid / layout.LOOKS_FILE).read_text())["looks"]) == 1  # look 2 not on record
    assert {p: m for p, m in finished_files(grid).items() if p in before} == before  # nothing trained twice
    before = finished_files(grid)

    # The last rerun, on two CPU workers: look 2 is decided once, and the sequence goes on to its end.
    last = sequence_cli(spec, out, "--device", "cpu,cpu")
    assert last.returncode == 0, last.stderr
    assert "look 1 " not in last.stdout and last.stdout.count("look 2 of at most 2") == 1
    assert {p: m for p, m in finished_files(grid).items() if p in before} == before
    assert without_wall_time(json.loads((grid / layout.LOOKS_FILE).read_text())) == without_wall_time(ref_looks)
    assert {k: without_timing(r) for k, r in results(grid).items()} == {
        k: without_timing(r) for k, r in results(ref).items()}  # fmt: skip
    # Every verdict equal but the wall-time claims': wall seconds differ between any two runs of one variant.
    verdicts, expected = (pd.read_csv(g / "report" / "verdicts.csv") for g in (grid, ref))
    timed = verdicts["claim"].str.contains("wall time")
    assert timed.sum() == 2 and verdicts[~timed].equals(expected[~expected["claim"].str.contains("wall time")])
    assert not list(out.rglob("*.tmp-*"))
