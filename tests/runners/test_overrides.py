"""`--set KEY=VALUE` on list/run/train: an override is the same as editing the grid's shared settings, and a bad
one is one line, exit 2, nothing written."""

from __future__ import annotations

import json

import pytest
import yaml

from nin.variant import Variant
from runners.cli import main
from runners.overrides import parse_overrides
from runners.spec import load_grid, parse_grid
from tests.conftest import REPO
from tests.datafiles import make_mnist
from tests.reliability.helpers import QUIET, assert_nothing_written, assert_one_clear_line, results

GRID = REPO / "tests" / "grids" / "overrides.yaml"


def with_set(*pairs: str, epochs: int | None = None):
    return load_grid(GRID, overrides=parse_overrides(pairs, epochs=epochs))


def edited(change) -> str:
    """The grid file's text after `change(doc)`: what the user would have written instead of an override."""
    doc = yaml.safe_load(GRID.read_text())
    change(doc)
    return yaml.safe_dump(doc, sort_keys=False)


def test_values_are_read_as_yaml_scalars_with_exponents_as_numbers():
    grid = with_set("lr=1e-2", "weight_decay=5E-4", "dropout=false", "optimizer=adamw", "epochs=4", "gamma=0.5")
    for variant in grid.variants:
        assert variant.lr == 0.01 and variant.weight_decay == 0.0005
        assert variant.dropout is False and variant.optimizer == "adamw" and variant.epochs == 4
        assert variant.gamma == 0.5
    assert with_set("image_size=null").variants[0].image_size == Variant(arch="cifar").image_size  # the default


def test_an_override_is_the_same_grid_as_the_edited_file():
    def change(doc):
        doc["settings"]["lr"] = 0.02
        doc["settings"]["epochs"] = 1
        doc["include"][0].pop("epochs")  # an override replaces the key in include rows too

    overridden = with_set("lr=0.02", "epochs=1")
    assert [v.id for v in overridden.variants] == [v.id for v in parse_grid(edited(change)).variants]
    assert {v.epochs for v in overridden.variants} == {1}
    assert overridden.raw["settings"]["lr"] == 0.02 and "epochs" not in overridden.raw["include"][0]


def test_overridden_values_change_the_ids():
    plain = {v.id for v in load_grid(GRID).variants}
    changed = {v.id for v in with_set("lr=0.1").variants}
    assert len(changed) == len(plain) == 6 and not plain & changed


def test_seeds_as_a_count_or_a_list():
    assert sorted({v.seed for v in with_set("seeds=3").variants}) == [0, 1, 2]
    assert len(with_set("seeds=3").variants) == 9
    assert [v.seed for v in with_set("seeds=[5, 7]").variants if v.head == "fc"] == [5, 7]
    assert with_set("seeds=[5,7]").raw["seeds"] == [5, 7]


def test_epochs_shorthand_equals_set_epochs():
    assert [v.id for v in with_set(epochs=4).variants] == [v.id for v in with_set("epochs=4").variants]


def test_list_json_shows_the_overridden_values(capsys):
    code = main(["list", str(GRID), "--json", "--set", "lr=1e-2", "--set", "dataset=mnist", "--set", "seeds=1"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and len(rows) == 3
    assert {(r["lr"], r["dataset"], r["seed"]) for r in rows} == {(0.01, "mnist", 0)}
    assert sorted(r["epochs"] for r in rows) == [2, 2, 3]
    code = main(["list", str(GRID), "--json", "--set", "epochs=7"])
    assert code == 0 and {r["epochs"] for r in json.loads(capsys.readouterr().out)} == {7}


# (argv after the grid file, words the one error line must contain)
BAD = [
    (["--set", "lr"], ("--set lr:", "KEY=VALUE")),
    (["--set", "=3"], ("--set =3", "key before '=' is empty")),
    (["--set", "lrr=0.1"], ("--set lrr=0.1", "unknown key 'lrr'", "did you mean 'lr'", "allowed:")),
    (["--set", "seed=1"], ("--set seed=1", "seeds")),
    (["--set", "head=fc"], ("--set head=fc", "'head' is an axis", "gap, fc")),
    (["--set", "lr=abc"], ("--set lr=abc", "lr", "valid number")),
    (["--set", "lr=-1"], ("--set lr=-1", "greater than 0")),
    (["--set", "lr=[0.1,0.2]"], ("--set lr=[0.1,0.2]", "single value", "axis")),
    (["--set", "dataset=imagenet"], ("--set dataset=imagenet", "'mnist'")),
    (["--set", "epochs=0"], ("--set epochs=0", "epochs")),
    (["--set", "epochs=[1"], ("--set epochs=[1", "not valid YAML")),
    (["--set", "seeds=0"], ("--set seeds=0", "between 1 and 1000")),
    (["--set", "seeds=[0,0]"], ("--set seeds=[0,0]", "listed twice")),
    (["--set", "seeds=[-1]"], ("--set seeds=[-1]", "non-negative")),
    (["--set", "warmup_epochs=5"], ("--set warmup_epochs=5", "smaller than epochs")),
    (["--set", "image_size=4"], ("--set image_size=4", "too small")),
    (["--set", "lr=0.1", "--set", "lr=0.2"], ("--set lr=0.2", "--set lr=0.1", "once")),
    (["--epochs", "2", "--set", "epochs=3"], ("--epochs 2", "--set epochs=3", "one of them")),
    (["--set", "seeds=1000"], ("3,000 runs", "--yes")),
    # The include row {head: gap, cccp: 0, epochs: 3} loses its epochs: it becomes the axes' gap row.
    (["--set", "cccp=0", "--set", "epochs=2"], ("include[0]", "duplicate variant", "--set epochs=2")),
]


@pytest.mark.parametrize(("extra", "words"), BAD, ids=[" ".join(extra) for extra, _ in BAD])
def test_bad_override_is_one_line_exit_2_nothing_written(tmp_path, capsys, extra, words):
    out = tmp_path / "out"
    code = main(["run", str(GRID), "--out", str(out), *QUIET, *extra])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert_one_clear_line(captured.err, *words)
    assert_nothing_written(out)


@pytest.mark.parametrize("command", ["list", "train"])
def test_list_and_train_take_set_too(tmp_path, capsys, command):
    extra = ["--out", str(tmp_path / "out"), "--variant", "x", *QUIET] if command == "train" else []
    assert main([command, str(GRID), *extra, "--set", "lrr=1"]) == 2
    assert_one_clear_line(capsys.readouterr().err, "--set lrr=1", "did you mean 'lr'")


def test_the_grid_trains_on_mnist_files_through_set(tmp_path, capsys):
    """The same grid on a user's MNIST in torchvision's raw layout: --set dataset=mnist --data-dir DIR."""
    make_mnist(tmp_path / "data", folder="MNIST")
    out = tmp_path / "out"
    argv = ["run", str(GRID), "--out", str(out), "--data-dir", str(tmp_path / "data"), *QUIET]
    code = main([*argv, "--set", "dataset=mnist", "--set", "epochs=1", "--set", "seeds=1"])
    assert code == 0, capsys.readouterr().err
    found = results(out / "overrides")
    assert len(found) == 3
    for result in found.values():
        assert result["status"] == "ok" and result["dataset"] == "mnist" and result["epochs_done"] == 1
        assert (result["n_train"], result["n_test"]) == (64, 32)  # the files written above, not embedded digits
    spec = yaml.safe_load((out / "overrides" / "spec.yaml").read_text())
    assert spec["settings"]["dataset"] == "mnist" and spec["seeds"] == 1


def test_the_demo_grid_runs_unchanged_on_mnist_files(tmp_path, capsys):
    """ablations/quick.yaml itself, as the README tells a user with MNIST files in torchvision's raw layout."""
    make_mnist(tmp_path / "data", "MNIST")
    out = tmp_path / "out"
    sets = ("dataset=mnist", "epochs=3", "warmup_epochs=1", "seeds=1")  # short: 3 epochs, 1 of them warm-up
    argv = ["run", str(REPO / "ablations" / "quick.yaml"), *(f"--set={s}" for s in sets)]
    argv += ["--data-dir", str(tmp_path / "data"), "--out", str(out), "--wandb", "disabled", "--device", "cpu",
             "--no-progress"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err[-2000:]
    runs = [json.loads(path.read_text()) for path in sorted((out / "quick" / "runs").glob("*/result.json"))]
    expected = load_grid(REPO / "ablations" / "quick.yaml", overrides=parse_overrides(sets))
    assert sorted(r["variant_id"] for r in runs) == sorted(v.id for v in expected.variants)
    assert {r["head"] for r in runs} == {"gap", "fc", "alexnet", None}  # None: the AlexNet reference row
    for result in runs:
        assert result["status"] == "ok" and result["dataset"] == "mnist", result["variant_id"]
        assert (result["n_train"], result["n_test"], result["image_size"]) == (64, 32, 99)
    assert (out / "quick" / "report" / "verdicts.csv").is_file()
