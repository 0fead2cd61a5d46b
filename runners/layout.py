"""The results directory of one grid, OUT/<grid>/, and the lock that allows one runner on it at a time."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml

from nin import store
from nin.errors import InputError


@dataclass(frozen=True)
class GridDir:
    root: Path  # OUT/<grid>

    @property
    def spec_path(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def run_dir(self, variant_id: str) -> Path:
        return self.runs / variant_id

    def result_path(self, variant_id: str) -> Path:
        return self.run_dir(variant_id) / store.RESULT_FILE

    def is_finished(self, variant_id: str) -> bool:
        return self.result_path(variant_id).is_file()

    def has_checkpoint(self, variant_id: str) -> bool:
        return (self.run_dir(variant_id) / store.CHECKPOINT_FILE).is_file()

    def stale_runs(self, variant_ids: set[str]) -> list[str]:
        """Run directories of an earlier version of the grid: kept, listed, never mixed into this grid's report."""
        if not self.runs.is_dir():
            return []
        return sorted(p.name for p in self.runs.iterdir() if p.is_dir() and p.name not in variant_ids)

    def write_spec(self, resolved: dict) -> None:
        store.atomic_write_bytes(self.spec_path, yaml.safe_dump(resolved, sort_keys=False).encode())


class GridLock:
    """An exclusive flock on OUT/<grid>/.lock: the kernel drops it when the runner dies, so it never sticks."""

    def __init__(self, grid_dir: GridDir):
        self.path = grid_dir.root / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> GridLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip()
            os.close(fd)
            owner = ""
            try:
                info = json.loads(holder)
                owner = f" (pid {info['pid']} on {info['host']})"
            except (ValueError, KeyError, TypeError):
                pass
            raise InputError(
                f"another nin-ablate run is already writing {self.path.parent}{owner}: wait for it to "
                f"finish or stop it, or use a different --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
