"""bench.recipe_screen trains the grid's own rows under a changed setting and says how each run ended."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import recipe_screen

QUICK = str(Path(__file__).parents[2] / "ablations" / "quick.yaml")


def test_a_screen_trains_the_chosen_rows_with_the_changed_setting(tmp_path: Path, capsys) -> None:
    argv = [QUICK, "--set", "epochs=2", "--set", "warmup_epochs=0", "--seeds", "0-1",
            "--where", "head=fc", "cccp=0", "dropout=false", "--out", str(tmp_path)]  # fmt: skip
    assert recipe_screen.main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["seed"] for line in lines] == [0, 1]
    for line in lines:
        assert "-fc-cccp0-do0-" in line["variant"] and line["stop"] == "cap" and line["epochs"] == 2
        assert len(line["running_train_acc"]) == 2 and "test_acc" not in line  # training behaviour only
        result = json.loads((tmp_path / line["variant"] / "result.json").read_text())
        assert result["warmup_epochs"] == 0 and result["seed"] == line["seed"]


@pytest.mark.parametrize("argv", [["--where", "head=nope"], ["--set", "warmup_epochs=-1"]])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], capsys) -> None:
    assert recipe_screen.main([QUICK, *argv]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
