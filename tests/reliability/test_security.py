"""Security basics: no code runs from a checkpoint or a grid file, a checkpoint never crosses variants, no secret is
written to disk or printed."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

import torch

from nin import layout, store
from nin.layout import GridDir
from runners.cli import main
from runners.run import RunOptions, run_grid
from runners.spec import load_grid
from tests.conftest import run_cli
from tests.reliability.helpers import (
    SETTINGS,
    assert_nothing_written,
    assert_one_clear_line,
    metrics,
    results,
    write_grid,
)

TWO_EPOCHS = SETTINGS.replace("epochs: 3", "epochs: 2")


class _OpensAFile:
    """Unpickling this calls open(path, "w"): proof, if the file appears, that a load ran code from the file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def hostile_checkpoint(path: Path, variant_id: str, marker: Path) -> None:
    """The store's own format (torch.save payload + sha256 footer), checksum valid, carrying an arbitrary object."""
    buffer = io.BytesIO()
    torch.save(
        {"format": store.CHECKPOINT_FORMAT, "variant_id": variant_id, "epoch": 1, "x": _OpensAFile(marker)}, buffer
    )
    payload = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload + hashlib.sha256(payload).hexdigest().encode())


def test_hostile_or_foreign_checkpoints_are_refused_and_the_variant_trains_from_scratch(tmp_path, capsys):
    spec = write_grid(tmp_path / "grid.yaml", settings=TWO_EPOCHS)
    out, marker = tmp_path / "out", tmp_path / "code-ran"
    grid = GridDir(out / "rel")
    options = dict(spec=spec, out=out, wandb="disabled", progress=False, report=False)
    donor, hostile, foreign = (v.id for v in sorted(load_grid(spec).variants, key=lambda v: v.cccp))
    assert run_grid(RunOptions(**options, only=(donor,))) == 0
    capsys.readouterr()
    hostile_checkpoint(grid.run_dir(hostile) / layout.CHECKPOINT_FILE, hostile, marker)
    grid.run_dir(foreign).mkdir()
    shutil.copy(grid.run_dir(donor) / layout.CHECKPOINT_FILE, grid.run_dir(foreign) / layout.CHECKPOINT_FILE)

    assert run_grid(RunOptions(**options)) == 0
    output = capsys.readouterr().out
    assert not marker.exists()  # weights_only=True: the object was refused, never constructed
    (refused,) = [line for line in output.splitlines() if line.startswith(f"{hostile}: ")]  # one line, once
    assert "cannot be loaded safely (weights_only=True): Unsupported global: GLOBAL io.open" in refused
    assert refused.endswith("training from scratch") and "\x1b" not in refused
    assert output.count(f"belongs to variant '{donor}', not '{foreign}'; refusing to resume from it") == 1
    assert "resuming after" not in output
    done = results(grid.root)
    for variant_id in (hostile, foreign):
        assert done[variant_id]["status"] == "ok" and done[variant_id]["epochs_done"] == 2
        assert [row["epoch"] for row in metrics(grid.root, variant_id)] == [1, 2]  # epoch 1 trained here
    assert metrics(grid.root, foreign) != metrics(grid.root, donor)


def test_python_tags_in_a_grid_file_are_refused(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    spec = tmp_path / "grid.yaml"
    spec.write_text(f'name: !!python/object/apply:builtins.open ["{marker}", "w"]\naxes: {{head: [gap]}}\n')
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out)]) == 2
    assert_one_clear_line(capsys.readouterr().err, str(spec), "invalid YAML", "python/object")
    assert not marker.exists()
    assert_nothing_written(out)


def test_no_secret_in_any_file_or_output(tmp_path):
    secret = "nin0ablate0secret0" + os.urandom(11).hex()  # 40 characters, found nowhere else
    spec = write_grid(tmp_path / "grid.yaml", "axes: {cccp: [1]}\n", settings=TWO_EPOCHS)
    out = tmp_path / "out"
    proc = run_cli(
        "run", str(spec), "--out", str(out), "--wandb", "offline", "--no-progress", env={"WANDB_API_KEY": secret}
    )
    assert proc.returncode == 0, proc.stderr
    written = [p for p in out.rglob("*") if p.is_file()]
    assert any("offline-run" in str(p) for p in written)  # W&B did write its run files
    assert any(p.name == "report.html" for p in written)
    assert secret not in proc.stdout + proc.stderr
    leaks = [p for p in written if secret.encode() in p.read_bytes()]
    assert leaks == []
