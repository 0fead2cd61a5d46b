"""`tune:`: each arm's lr picked on validation. The block's syntax and bad values, the procedure (picks, ties,
widening at an edge, diverged candidates), the two stages through the real runner (resume, edited candidates,
staleness, the poison test), `nin-ablate list` before and after the picks, and the report loader's view."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from nin import layout, store
from nin.layout import LOST_JOB_KEY, GridDir
from nin.variant import Variant
from runners import tuning
from runners.cli import main
from runners.overrides import parse_overrides
from runners.run import EXIT_FAILED_RUNS, RunOptions, run_grid
from runners.spec import parse_grid
from tests.reliability.helpers import QUIET, assert_nothing_written, assert_one_clear_line

SETTINGS = (
    "{arch: cifar, width: 0.125, dataset: synthetic, image_size: 16, train_size: 100, test_size: 50, "
    "batch_size: 50, epochs: 1, lr: 0.02, momentum: 0.9, precision: fp32}"
)
HEAD = f"name: tuned\nsettings: {SETTINGS}\n"
BODY = "axes: {head: [gap, fc]}\nseeds: [0, 1]\nvalidation: 0.2\n"
TUNE = "tune: {lr: auto, seeds: [100, 101, 102], pick: val_acc}\n"


def grid_text(tune: str = TUNE, body: str = BODY) -> str:
    return HEAD + body + tune


# ---- the block ----------------------------------------------------------------------------------------------------


def test_auto_is_half_one_and_two_times_the_shared_lr_and_every_row_is_an_arm() -> None:
    grid = parse_grid(grid_text(body=BODY + "include: [{head: gap, cccp: 0}]\n"))
    assert grid.tune is not None
    assert grid.tune.candidates == (0.01, 0.02, 0.04) and grid.tune.base == 0.02 and grid.tune.widen == 2
    assert grid.variants == () and grid.resolved()["variants"] == []  # no grid run before the picks
    assert [(a.head, a.cccp) for a in grid.arms] == [("gap", 2), ("fc", 2), ("gap", 0)]  # the include row too
    assert len({a.arm_id(("lr",)) for a in grid.arms}) == 3
    # An arm's runs at every value and seed share its arm id; the seeds and values tell them apart.
    runs = tuning.initial_runs(grid, grid.arms[0])
    assert len(runs) == 9 and len({v.id for v in runs}) == 9
    assert {v.arm_id(("lr",)) for v in runs} == {grid.arms[0].arm_id(("lr",))}
    # An explicit list is sorted; --set lr moves auto's centre.
    listed = parse_grid(grid_text("tune: {lr: [0.004, 0.001, 0.002], seeds: [7], pick: val_loss, widen: 0}\n"))
    assert listed.tune.candidates == (0.001, 0.002, 0.004) and listed.tune.base is None
    moved = parse_grid(grid_text(), overrides=parse_overrides(["lr=0.1"]))
    assert moved.tune.candidates == (0.05, 0.1, 0.2)


def test_a_stage_2_run_is_the_variant_the_same_grid_names_at_that_lr() -> None:
    # The tuned value enters a run's config (hence its id) as a setting would; the block itself adds nothing, so a
    # grid without `tune` keeps its ids (the shipped grids' ids are pinned in test_validation).
    tuned = parse_grid(grid_text())
    fixed = parse_grid(grid_text(tune="").replace("lr: 0.02", "lr: 0.04"))
    plans = [tuning.ArmPlan(arm=a, arm_id=a.arm_id(("lr",)), candidates=[0.04], pick=0.04) for a in tuned.arms]
    assert [v.id for v in tuning.picked_grid(tuned, plans).variants] == [v.id for v in fixed.variants]


BAD_TUNE = [
    ("no-validation", grid_text(body="axes: {head: [gap, fc]}\nseeds: [0, 1]\n"), ("tune", "validation")),
    ("acc-two-seeds", grid_text("tune: {lr: auto, seeds: [100, 101], pick: val_acc}\n"), ("at least 3", "val_loss")),
    ("seeds-overlap", grid_text("tune: {lr: auto, seeds: [1, 100, 101], pick: val_acc}\n"), ("tune.seeds", "disjoint")),
    ("unknown-key", grid_text("tune: {lr: auto, seeds: [100], pick: val_loss, sedes: 1}\n"), ("sedes", "seeds")),
    ("untunable-key", grid_text("tune: {weight_decay: auto, seeds: [100], pick: val_loss}\n"), ("weight_decay",)),
    ("nothing-tuned", grid_text("tune: {seeds: [100], pick: val_loss}\n"), ("no setting to tune",)),
    ("unknown-pick", grid_text("tune: {lr: auto, seeds: [100], pick: test_acc}\n"), ("tune.pick", "test_acc")),
    ("no-pick", grid_text("tune: {lr: auto, seeds: [100]}\n"), ("tune.pick",)),
    ("empty-list", grid_text("tune: {lr: [], seeds: [100], pick: val_loss}\n"), ("tune.lr", "at least 2")),
    ("one-candidate", grid_text("tune: {lr: [0.01], seeds: [100], pick: val_loss}\n"), ("tune.lr", "at least 2")),
    ("zero-candidate", grid_text("tune: {lr: [0.01, 0], seeds: [100], pick: val_loss}\n"), ("lr[1]", "positive")),
    ("negative", grid_text("tune: {lr: [-0.01, 0.01], seeds: [100], pick: val_loss}\n"), ("lr[0]", "positive")),
    ("text", grid_text("tune: {lr: [0.01, fast], seeds: [100], pick: val_loss}\n"), ("positive", "fast")),
    ("twice", grid_text("tune: {lr: [0.01, 0.01], seeds: [100], pick: val_loss}\n"), ("listed twice",)),
    ("too-large", grid_text("tune: {lr: [0.01, 20], seeds: [100], pick: val_loss}\n"), ("tune.lr[1]", "lr", "10")),
    ("lr-scalar", grid_text("tune: {lr: 0.01, seeds: [100], pick: val_loss}\n"), ("auto or a list",)),
    ("auto-no-lr", grid_text().replace(" lr: 0.02,", ""), ("auto", "settings")),
    ("no-seeds", grid_text("tune: {lr: auto, pick: val_loss}\n"), ("own seeds",)),
    ("seeds-count", grid_text("tune: {lr: auto, seeds: 3, pick: val_loss}\n"), ("tune.seeds", "list")),
    ("seed-twice", grid_text("tune: {lr: auto, seeds: [100, 100], pick: val_loss}\n"), ("listed twice",)),
    ("widen-bad", grid_text("tune: {lr: auto, seeds: [100], pick: val_loss, widen: -1}\n"), ("tune.widen",)),
    ("not-mapping", grid_text("tune: [lr]\n"), ("tune must be a mapping",)),
    (
        "lr-axis",
        grid_text(
            "tune: {lr: [0.1, 0.2], seeds: [100], pick: val_loss}\n", BODY.replace("head: [gap, fc]", "lr: [0.1, 0.2]")
        ).replace(" lr: 0.02,", ""),
        ("axes.lr", "tuned"),
    ),
    ("lr-in-include", grid_text(body=BODY + "include: [{head: gap, lr: 0.5}]\n"), ("include[0].lr", "tuned")),
]


@pytest.mark.parametrize("text,words", [pytest.param(t, w, id=i) for i, t, w in BAD_TUNE])
def test_bad_tune_values_are_one_line_exit_2_and_nothing_written(tmp_path, capsys, text, words) -> None:
    spec = tmp_path / "grid.yaml"
    spec.write_text(text)
    out = tmp_path / "out"
    code = main(["run", str(spec), "--out", str(out), *QUIET])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    line = assert_one_clear_line(captured.err, str(spec), *words)
    assert "Traceback" not in line
    assert_nothing_written(out)


def test_grid_seeds_overridden_onto_the_tuning_seeds_are_refused(tmp_path, capsys) -> None:
    spec = tmp_path / "grid.yaml"
    spec.write_text(grid_text())
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), "--set", "seeds=[0, 102]", *QUIET]) == 2
    assert_one_clear_line(capsys.readouterr().err, "102", "--set seeds", "disjoint")
    assert_nothing_written(out)


# ---- the procedure through the runner, with scores we choose ------------------------------------------------------
# run_local replaced by a stand-in that writes each run's result.json with a validation score from `score`: the
# runner, the staging, tuning.json and staleness are the real code; only training is not.

Score = Callable[[Variant], dict]


class FakeTraining:
    def __init__(self, score: Score, stop_after: int | None = None):
        self.score, self.stop_after = score, stop_after
        self.trained: list[Variant] = []
        self.records_seen: list[dict | None] = []  # tuning.json as each batch of runs started

    def __call__(self, variants, context, devices, on_result) -> None:
        grid = GridDir(Path(context.grid_dir))  # OUT/<grid>/tuning for stage 1, OUT/<grid> for stage 2
        stage_1 = grid.root.name == layout.TUNING_DIR
        record_path = GridDir(grid.root.parent).tuning_path if stage_1 else grid.tuning_path
        self.records_seen.append(json.loads(record_path.read_text()) if record_path.is_file() else None)
        for variant in variants:
            if self.stop_after is not None and len(self.trained) == self.stop_after:
                raise KeyboardInterrupt
            tuned = {key: getattr(variant, key) for key in context.tuned}  # what the real worker records
            result = {
                "variant_id": variant.id, "group_id": variant.group_id, "status": "ok", **variant.config(),
                "test_acc": 0.5, "test_loss": 1.0, "n_val": 20, **self.score(variant),
                **({"tuned": tuned} if tuned else {}),
            }  # fmt: skip
            store.write_json(grid.result_path(variant.id), result)
            self.trained.append(variant)
            on_result(result)


def run_fake(monkeypatch, spec: Path, out: Path, fake: FakeTraining) -> int:
    monkeypatch.setattr("runners.run.run_local", fake)
    return run_grid(RunOptions(spec=spec, out=out, device="cpu", wandb="disabled", progress=False, report=False))


def peak_at(best: dict[str, float]) -> Score:
    """val_acc highest at each head's `best` lr, falling with the log-distance from it (no ties)."""

    def score(v: Variant) -> dict:
        acc = 0.9 - 0.1 * abs(math.log2(v.lr / best[v.head]))
        return {"val_acc": acc, "val_loss": 1.0 - acc}

    return score


def write(tmp_path: Path, text: str) -> Path:
    spec = tmp_path / "grid.yaml"
    spec.write_text(text)
    return spec


def read_record(out: Path) -> dict:
    return json.loads((out / "tuned" / layout.TUNING_FILE).read_text())


def test_each_arm_gets_its_pick_and_tuning_json_holds_every_score(tmp_path, monkeypatch) -> None:
    spec = write(tmp_path, grid_text("tune: {lr: auto, seeds: [100, 101, 102], pick: val_acc, widen: 0}\n"))
    out = tmp_path / "o"
    fake = FakeTraining(peak_at({"gap": 0.01, "fc": 0.02}))
    assert run_fake(monkeypatch, spec, out, fake) == 0
    record = read_record(out)
    assert record["complete"] and record["n_val"] == 20 and record["validation"] == 0.2
    assert record["tune"] == {
        "key": "lr", "candidates": [0.01, 0.02, 0.04], "auto": True, "base": 0.02, "seeds": [100, 101, 102],
        "pick": "val_acc", "widen": 0,
    }  # fmt: skip
    gap, fc = record["arms"]
    assert (gap["config"]["head"], gap["pick"], gap["at_edge"]) == ("gap", 0.01, "low")  # widen 0: stays at the edge
    assert (fc["config"]["head"], fc["pick"], fc["at_edge"]) == ("fc", 0.02, None)
    assert "lr" not in gap["config"] and "seed" not in gap["config"]
    for arm in record["arms"]:
        assert [c["value"] for c in arm["scores"]] == [0.01, 0.02, 0.04]
        for candidate in arm["scores"]:
            assert [r["seed"] for r in candidate["runs"]] == [100, 101, 102]
            assert candidate["mean"] == pytest.approx(sum(r["score"] for r in candidate["runs"]) / 3)
    # Stage 1 on the tuning seeds only, into tuning/runs; stage 2 at each pick on the grid's seeds, into runs/.
    tuning_runs = [v for v in fake.trained if v.seed >= 100]
    assert len(tuning_runs) == 18 and fake.trained[:18] == tuning_runs
    assert sorted((v.head, v.lr, v.seed) for v in fake.trained[18:]) == [
        ("fc", 0.02, 0), ("fc", 0.02, 1), ("gap", 0.01, 0), ("gap", 0.01, 1),
    ]  # fmt: skip
    grid_dir = GridDir(out / "tuned")
    assert set(grid_dir.tuning.finished_ids()) == {v.id for v in tuning_runs}
    assert set(grid_dir.finished_ids()) == {v.id for v in fake.trained[18:]}
    assert json.loads(json.dumps(store_spec(grid_dir)))["variants"] == [v.id for v in fake.trained[18:]]
    # Every pick was on record before the first stage-2 run started.
    assert fake.records_seen[-1]["complete"] and fake.records_seen[-1]["picks"] == record["picks"]
    # The report pairs GAP with FC although their picks differ: the tuned lr is treatment, not an axis or label.
    from judge.load import load_results, varying

    results = load_results(grid_dir.root)
    assert set(results.runs["variant_id"]) == set(grid_dir.finished_ids())  # tuning runs never read
    assert sorted(results.runs["tuned_lr"]) == [0.01, 0.01, 0.02, 0.02]
    assert "lr" not in varying(results.runs, results.config_columns) and "lr" not in results.runs.columns
    labels = set(results.runs["label"])
    assert len(labels) == 2 and not any("lr" in label for label in labels)
    # The arm left at the low edge (widen 0) is named on the report page.
    assert any("still at the low edge" in note and gap["arm_id"] in note for note in results.notes)


def store_spec(grid_dir: GridDir) -> dict:
    import yaml

    return yaml.safe_load(grid_dir.spec_path.read_text())


def test_a_pick_at_an_edge_widens_by_x2_until_the_limit_and_each_widening_is_recorded_first(
    tmp_path, monkeypatch
) -> None:
    spec, out = write(tmp_path, grid_text("tune: {lr: auto, seeds: [100], pick: val_loss, widen: 2}\n")), tmp_path / "o"
    fake = FakeTraining(peak_at({"gap": 0.02, "fc": 1.0}))  # fc keeps improving upwards
    assert run_fake(monkeypatch, spec, out, fake) == 0
    gap, fc = read_record(out)["arms"]
    assert gap["candidates"] == [0.01, 0.02, 0.04] and gap["widenings"] == [] and gap["pick"] == 0.02
    assert fc["candidates"] == [0.01, 0.02, 0.04, 0.08, 0.16]
    assert [(w["side"], w["added"], w["pick_before"]) for w in fc["widenings"]] == [
        ("high", 0.08, 0.04), ("high", 0.16, 0.08),
    ]  # fmt: skip
    assert fc["pick"] == 0.16 and fc["at_edge"] == "high" and "widened 2 time(s)" in fc["edge_note"]
    # Three rounds of tuning runs, then stage 2; each round began with its widening already in tuning.json.
    rounds = [r for r in fake.records_seen]
    assert len(rounds) == 4
    assert [r["arms"][1]["candidates"] for r in rounds[:3]] == [
        [0.01, 0.02, 0.04], [0.01, 0.02, 0.04, 0.08], [0.01, 0.02, 0.04, 0.08, 0.16],
    ]  # fmt: skip
    assert sorted(v.lr for v in fake.trained if v.head == "fc" and v.seed >= 100) == [0.01, 0.02, 0.04, 0.08, 0.16]
    assert [v.lr for v in fake.trained if v.head == "gap" and v.seed >= 100] == [0.01, 0.02, 0.04]
    assert not rounds[2]["complete"] and rounds[3]["complete"]
    assert {(v.head, v.lr) for v in fake.trained if v.seed < 100} == {("gap", 0.02), ("fc", 0.16)}


def test_a_diverged_seed_rules_its_value_out_and_ties_go_to_the_smaller_value(tmp_path, monkeypatch) -> None:
    spec, out = write(tmp_path, grid_text("tune: {lr: auto, seeds: [100, 101, 102], pick: val_acc}\n")), tmp_path / "o"

    def score(v: Variant) -> dict:
        if v.head == "fc" and v.lr == 0.04 and v.seed == 101:
            return {"status": "diverged", "val_acc": None, "val_loss": None}
        acc = {0.01: 0.7, 0.02: 0.8, 0.04: 0.95}[v.lr] if v.head == "fc" else {0.01: 0.6, 0.02: 0.8, 0.04: 0.8}[v.lr]
        return {"val_acc": acc, "val_loss": 1 - acc}

    fake = FakeTraining(score)
    assert run_fake(monkeypatch, spec, out, fake) == 0
    gap, fc = read_record(out)["arms"]
    assert gap["pick"] == 0.02 and gap["at_edge"] is None and gap["widenings"] == []  # tie 0.02 = 0.04: the smaller
    top = fc["scores"][2]
    assert not top["eligible"] and "seed 101 diverged" in top["problem"] and top["mean"] is None
    assert fc["pick"] == 0.02 and fc["at_edge"] is None


def test_a_tuning_run_slurm_lost_stops_before_any_pick_and_the_rerun_trains_it(tmp_path, monkeypatch, capsys) -> None:
    """The lost run is the one the pick rests on: picked over its stand-in, fc would get 0.01 and keep it."""
    spec, out = write(tmp_path, grid_text()), tmp_path / "o"
    lost = {"head": "fc", "lr": 0.02, "seed": 101}

    def score(v: Variant) -> dict:
        if {key: getattr(v, key) for key in lost} == lost:
            return {"status": "failed", "val_acc": None, "val_loss": None,
                    LOST_JOB_KEY: {"job_id": "7_3", "state": "NODE_FAIL"}}  # fmt: skip
        acc = 0.9 - 0.1 * abs(math.log2(v.lr / 0.02))
        return {"val_acc": acc, "val_loss": 1 - acc}

    first = FakeTraining(score)
    assert run_fake(monkeypatch, spec, out, first) == EXIT_FAILED_RUNS
    assert "1 tuning run(s) ended without their outcome (a worker stopped, or Slurm lost" in capsys.readouterr().err
    assert len(first.trained) == 2 * 3 * 3  # two arms × three candidates × three tuning seeds; no stage-2 run
    # tuning.json: the gap arm, all of whose runs ended, has its pick; the fc arm's waits on the lost run, which it
    # lists as still to train.
    arms = {arm["arm_id"].split("-")[1]: arm for arm in read_record(out)["arms"]}
    assert arms["gap"]["pick"] == 0.02 and arms["gap"]["pending"] == []
    assert arms["fc"]["pick"] is None and len(arms["fc"]["pending"]) == 1 and "-fc-" in arms["fc"]["pending"][0]
    lost["seed"] = -1  # trained again, it succeeds
    again = FakeTraining(score)
    assert run_fake(monkeypatch, spec, out, again) == 0
    assert [(v.head, v.lr, v.seed) for v in again.trained] == [("fc", 0.02, 101)] + [
        (head, 0.02, seed) for head in ("gap", "fc") for seed in (0, 1)]  # fmt: skip
    assert {arm["pick"] for arm in read_record(out)["arms"]} == {0.02}


def test_resume_mid_tuning_then_edit_the_candidates(tmp_path, monkeypatch, capsys) -> None:
    text = grid_text("tune: {lr: [0.01, 0.02, 0.04], seeds: [100], pick: val_loss, widen: 0}\n")
    spec, out = write(tmp_path, text), tmp_path / "o"
    score = peak_at({"gap": 0.04, "fc": 0.08})
    interrupted = FakeTraining(score, stop_after=4)
    with pytest.raises(KeyboardInterrupt):
        run_fake(monkeypatch, spec, out, interrupted)
    grid_dir = GridDir(out / "tuned")
    assert store_spec(grid_dir)["variants"] == [] and not grid_dir.finished_ids()
    assert len(grid_dir.tuning.finished_ids()) == 4 and not read_record(out)["complete"]
    # Before stage 1 ends, `list` shows the tuning runs and the stage-2 arms with their lr to be tuned.
    capsys.readouterr()
    assert main(["list", str(spec), "--out", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["stage"] for r in rows] == ["tuning"] * 6 + ["grid"] * 4
    assert all(r["lr"] == "to be tuned" and r["variant_id"] is None for r in rows[6:])
    assert {r["lr"] for r in rows[:6]} == {0.01, 0.02, 0.04}

    resumed = FakeTraining(score)
    assert run_fake(monkeypatch, spec, out, resumed) == 0
    assert len([v for v in resumed.trained if v.seed >= 100]) == 2  # only the tuning runs still missing
    first_grid = {v.id: (v.head, v.lr) for v in resumed.trained if v.seed < 100}
    assert sorted(set(first_grid.values())) == [("fc", 0.04), ("gap", 0.04)]
    assert set(store_spec(grid_dir)["variants"]) == set(first_grid)
    mtimes = {run_id: grid_dir.result_path(run_id).stat().st_mtime_ns for run_id in first_grid}

    # A new candidate: only its (arm, value, seed) runs train; fc re-picks 0.08 and its grid runs retrain, gap's
    # pick is unchanged and its grid runs are kept as they were.
    spec.write_text(text.replace("[0.01, 0.02, 0.04]", "[0.01, 0.02, 0.04, 0.08]"))
    edited = FakeTraining(score)
    capsys.readouterr()
    assert run_fake(monkeypatch, spec, out, edited) == 0
    assert sorted((v.head, v.lr, v.seed) for v in edited.trained) == [
        ("fc", 0.08, 0), ("fc", 0.08, 1), ("fc", 0.08, 100), ("gap", 0.08, 100),
    ]  # fmt: skip
    assert read_record(out)["picks"] == {
        arm["arm_id"]: {"gap": 0.04, "fc": 0.08}[arm["config"]["head"]] for arm in read_record(out)["arms"]
    }
    stale = [run_id for run_id, (head, _) in first_grid.items() if head == "fc"]
    err = capsys.readouterr().err
    assert len(stale) == 2 and all(run_id in err for run_id in stale)  # listed as stale, kept on disk
    assert set(stale) <= set(grid_dir.finished_ids()) and not set(stale) & set(store_spec(grid_dir)["variants"])
    for run_id, (head, _) in first_grid.items():
        if head == "gap":
            assert grid_dir.result_path(run_id).stat().st_mtime_ns == mtimes[run_id]
    # Dropping a candidate leaves its tuning runs on disk but out of the picks.
    spec.write_text(text.replace("[0.01, 0.02, 0.04]", "[0.02, 0.04, 0.08]"))
    dropped = FakeTraining(score)
    assert run_fake(monkeypatch, spec, out, dropped) == 0 and dropped.trained == []
    assert "tuning run(s)" in capsys.readouterr().err
    assert all(c["value"] != 0.01 for arm in read_record(out)["arms"] for c in arm["scores"])


# ---- real training ------------------------------------------------------------------------------------------------


def test_two_stages_for_real_and_the_poison_test(tmp_path, capsys) -> None:
    from judge.load import load_results, varying

    spec = write(
        tmp_path,
        HEAD + "axes: {head: [gap, fc]}\nseeds: [0]\nvalidation: 0.2\n"
        "tune: {lr: auto, seeds: [100], pick: val_loss, widen: 0}\n",
    )
    out = tmp_path / "o"
    options = RunOptions(spec=spec, out=out, device="cpu", wandb="disabled", progress=False, report=False,
                         cpu_threads=1)  # fmt: skip
    assert run_grid(options) == 0
    grid_dir = GridDir(out / "tuned")
    record_bytes = grid_dir.tuning_path.read_bytes()
    record = json.loads(record_bytes)
    tuning_results = {p.parent.name: json.loads(p.read_text()) for p in grid_dir.tuning.runs.glob("*/result.json")}
    assert len(tuning_results) == 6 and all(r["status"] == "ok" for r in tuning_results.values())
    for arm in record["arms"]:  # the pick is the lowest final-epoch val_loss the runs wrote
        losses = {c["value"]: tuning_results[c["runs"][0]["variant_id"]]["val_loss"] for c in arm["scores"]}
        assert arm["pick"] == min(losses, key=losses.get)
    grid_results = {p.parent.name: json.loads(p.read_text()) for p in grid_dir.runs.glob("*/result.json")}
    assert len(grid_results) == 2
    for result in grid_results.values():
        assert result["tuned"] == {"lr": result["lr"]} and result["seed"] == 0
        assert result["lr"] == record["picks"][Variant.model_validate(_config(result)).arm_id(("lr",))]
    assert not any("tuned" in r for r in tuning_results.values())

    # The report reads runs/ only, and the tuned lr is treatment: not an axis, a pairing key or a label part.
    results = load_results(grid_dir.root)
    assert set(results.runs["variant_id"]) == set(grid_results)
    assert "lr" not in results.config_columns and "tuned_lr" in results.runs.columns
    assert "head" in varying(results.runs, results.config_columns)

    # `list` after stage 1: every run has its id, the grid's at their picks.
    capsys.readouterr()
    assert main(["list", str(spec), "--out", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["variant_id"] for r in rows if r["stage"] == "grid"} == set(grid_results)

    # Poison: garbage and NaN in every tuning run's test metrics. Nothing is re-picked, nothing retrains.
    for path in grid_dir.tuning.runs.glob("*/result.json"):
        result = json.loads(path.read_text())
        result.update(test_acc=float("nan"), test_loss="garbage", best_test_acc=-7, gap_acc=None)
        path.write_text(json.dumps(result))
    before = {p: p.stat().st_mtime_ns for p in grid_dir.runs.glob("*/*")}
    assert run_grid(options) == 0
    assert grid_dir.tuning_path.read_bytes() == record_bytes
    assert {p: p.stat().st_mtime_ns for p in grid_dir.runs.glob("*/*")} == before


def _config(result: dict) -> dict:
    return {k: v for k, v in result.items() if k in Variant.model_fields}


def test_train_one_variant_is_refused_on_a_tuned_grid(tmp_path, capsys) -> None:
    spec, out = write(tmp_path, grid_text()), tmp_path / "o"
    assert main(["train", str(spec), "--variant", "cifar-gap", "--out", str(out), *QUIET]) == 2
    assert_one_clear_line(capsys.readouterr().err, "--variant", "tune")
    assert_nothing_written(out)
