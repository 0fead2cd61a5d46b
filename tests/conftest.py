from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _quiet_tracking() -> None:
    # Tests never talk to a W&B server; a test that checks tracking sets its own mode.
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("WANDB_SILENT", "true")


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """The real console entry point in a subprocess: exit code, stdout, stderr as a user sees them."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "runners", *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
