"""A small grid recorded from real runs (the quick grid, 3 seeds, 2 epochs: tests/fixtures/recorded_grid/): its
report's summary.csv, effects.csv and verdicts.csv equal the ones recorded beside it. A change that moves code
without meaning to change a decision keeps them; one that means to records them anew (RECORD=1) and says why."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from reports import write_report

RECORDED = Path(__file__).parents[1] / "fixtures" / "recorded_grid"
TABLES = ("summary", "effects", "verdicts")


@pytest.fixture(scope="module")
def report_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    grid_dir = tmp_path_factory.mktemp("recorded") / "quick"
    shutil.copytree(RECORDED / "quick", grid_dir)
    return write_report(grid_dir).tables


@pytest.mark.parametrize("table", TABLES)
def test_report_tables_equal_the_recorded_ones(report_tables: dict[str, Path], table: str) -> None:
    expected_path = RECORDED / "expected" / f"{table}.csv"
    if os.environ.get("RECORD") == "1":
        shutil.copyfile(report_tables[table], expected_path)
    actual = pd.read_csv(report_tables[table])
    expected = pd.read_csv(expected_path)
    assert len(expected) > 0
    # Numbers to 1e-9 (a CPU's summation order may move the last bits); every word and count exactly.
    pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=1e-9, atol=1e-12)


def test_the_recorded_grid_is_a_complete_real_grid() -> None:
    """The fixture is what a real run wrote: every run spec.yaml lists has its result.json and metrics.jsonl."""
    import yaml

    spec = yaml.safe_load((RECORDED / "quick" / "spec.yaml").read_text())
    runs = RECORDED / "quick" / "runs"
    listed = spec["variants"]
    found = sorted(p.name for p in runs.iterdir())
    assert len(found) == 42
    assert all((runs / name / "result.json").is_file() and (runs / name / "metrics.jsonl").is_file() for name in found)
    assert sorted(listed) == found
