"""The lock that allows one runner at a time on a grid's results directory (nin.layout owns its paths)."""

from __future__ import annotations

import fcntl
import json
import os
import socket

from nin.errors import InputError
from nin.layout import GridDir


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
