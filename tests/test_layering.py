"""judge/ stands below runners/ and reports/: it imports neither of them, nor torch, and nothing imports in a cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("nin", "judge", "reports", "runners")
# Which of the project's packages each may import: the one-way direction of DESIGN.md's layout.
ALLOWED = {
    "nin": {"nin"},
    "judge": {"judge", "nin"},
    "reports": {"reports", "judge", "nin"},
    "runners": {"runners", "judge", "reports", "nin", "bench"},
}


def _imports(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, at module level or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_below_itself(package: str) -> None:
    wrong = {
        f"{path.relative_to(REPO)} imports {name}"
        for path in sorted((REPO / package).rglob("*.py"))
        for name in _imports(path) & set(PACKAGES + ("bench",))
        if name not in ALLOWED[package]
    }
    assert not wrong, sorted(wrong)


def test_no_judge_module_names_torch() -> None:
    named = [str(p.relative_to(REPO)) for p in (REPO / "judge").rglob("*.py") if {"torch", "torchvision"} & _imports(p)]
    assert not named


def test_importing_judge_and_reports_loads_no_torch() -> None:
    modules = sorted(f"judge.{p.stem}" for p in (REPO / "judge").glob("*.py") if p.stem != "__init__")
    code = f"import sys, {', '.join(modules)}, reports, reports.html, reports.plots; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_layering_check_catches_an_upward_import(tmp_path: Path) -> None:
    """Negative control: a judge module importing reports is what the first test reports."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from reports.tables import ablation_frame\n    import torch\n")
    assert _imports(bad) == {"reports", "torch"}
    assert not _imports(bad) <= ALLOWED["judge"]
