"""nin.layout owns the results directory: every writer and reader takes its names and keys from there."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nin import layout
from nin.results import failed_result
from nin.train import train
from nin.variant import VARIANT_FIELDS, Variant
from tests.conftest import REPO

TINY = dict(arch="cifar", width=0.125, dataset="synthetic", batch_size=50, lr=0.05, head="fc", epochs=1)


def test_every_result_key_is_a_setting_or_a_registered_outcome(tmp_path):
    variant = Variant(**TINY)
    ok = train(variant, tmp_path / "ok", device="cpu", progress=False)
    failed = failed_result(variant, RuntimeError("boom"), "2026-01-01T00:00:00+00:00", None, tmp_path / "ok")
    for result in (ok, failed):
        unknown = set(result) - set(VARIANT_FIELDS) - set(layout.OUTCOME_KEYS)
        assert not unknown, f"result.json keys registered nowhere: {sorted(unknown)}"
    # precision is the one setting a result records as resolved ("auto" → "fp32"/"bf16"): reports read it as an outcome
    assert set(layout.OUTCOME_KEYS) & set(VARIANT_FIELDS) == {"precision"}
    assert set(layout.TIMING_KEYS) <= set(layout.OUTCOME_KEYS)
    assert failed["epochs_done"] == 1  # the failure record read the finished epoch through layout.read_metrics


def test_grid_dir_paths_and_stale_runs(tmp_path):
    grid = layout.GridDir(tmp_path / "g")
    assert grid.stale_runs({"a"}) == [] and grid.run_ids() == []
    for run_id in ("a", "b", "c"):
        grid.run_dir(run_id).mkdir(parents=True)
    grid.result_path("a").write_text("{}")
    grid.result_path("c").write_text("{}")
    (grid.runs / "stray-file").write_text("not a run")
    assert grid.run_ids() == ["a", "b", "c"]
    assert grid.finished_ids() == ["a", "c"]
    assert grid.stale_runs(["a", "b"]) == ["c"]
    assert grid.spec_path == tmp_path / "g" / layout.SPEC_FILE
    assert grid.report == tmp_path / "g" / layout.REPORT_DIR
    assert grid.checkpoint_path("a").name == layout.CHECKPOINT_FILE


def test_metrics_reader_skips_or_refuses_bad_lines(tmp_path):
    path = tmp_path / layout.METRICS_FILE
    path.write_text('{"epoch": 1}\n\nnot json\n[1, 2]\n{"epoch": 2}\n')
    bad: list[int] = []
    rows = layout.read_metrics(path, on_bad_line=lambda number, _text: bad.append(number))
    assert rows == [{"epoch": 1}, {"epoch": 2}] and bad == [3, 4]
    with pytest.raises(ValueError, match=":3:"):
        layout.read_metrics(path)


def test_layout_imports_no_torch():
    code = "import sys, nin.layout; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
