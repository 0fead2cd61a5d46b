"""The one writer of run files: atomic JSON, per-epoch metrics, checkpoints.

Every file is written to a temp name beside its target, flushed to disk, then renamed over it, so a reader (or a
rerun after a kill) sees either the old complete file or the new complete file, never half of one. Temp names start
with "." and contain ".tmp-" so that nothing reading a results directory mistakes them for results.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from nin.layout import CHECKPOINT_FILE, LOOKS_FILE, METRICS_FILE, RESULT_FILE

CHECKPOINT_FORMAT = 1
# Test hook: "checkpoint:2" SIGKILLs this process at its 2nd checkpoint write (also "result:N", "metrics:N" and
# "looks:N", a sequence's looks.json), after the temp file is complete and before the rename. Unset, as it is outside
# tests, it costs one environment lookup.
TEST_KILL_ENV = "NIN_ABLATE_TEST_KILL_AT"
_TEST_KILL_FILES = {"checkpoint": CHECKPOINT_FILE, "result": RESULT_FILE, "metrics": METRICS_FILE, "looks": LOOKS_FILE}
_test_kill_writes: Counter[str] = Counter()


_UMASK = os.umask(0)
os.umask(_UMASK)


class CorruptCheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted: truncated, failing its checksum, or for another variant."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared like any file the user writes
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _test_kill_hook(path)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _test_kill_hook(path: Path) -> None:
    where = os.environ.get(TEST_KILL_ENV)
    if not where:
        return
    kind, _, nth = where.partition(":")
    if _TEST_KILL_FILES.get(kind) == path.name:
        _test_kill_writes[kind] += 1
        if _test_kill_writes[kind] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, allow_nan=False, default=str) + "\n").encode())


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl is rewritten whole each epoch from the checkpointed history, so it is never half a line."""
    lines = "".join(json.dumps(row, allow_nan=True) + "\n" for row in history)
    atomic_write_bytes(path, lines.encode())


def remove_temp_files(run_dir: Path) -> int:
    """Temp files left by a process killed mid-write; they are never results. Returns how many were removed."""
    removed = 0
    if run_dir.is_dir():
        for leftover in run_dir.glob(".*.tmp-*"):
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save of plain tensors and containers, with a sha256 footer so that a torn file is detected."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    payload = buffer.getvalue()
    atomic_write_bytes(path, payload + hashlib.sha256(payload).hexdigest().encode())


def load_checkpoint(path: Path, variant_id: str) -> dict[str, Any]:
    """Load with weights_only=True (no arbitrary code); refuse a torn file or another variant's checkpoint."""
    blob = path.read_bytes()
    payload, digest = blob[:-64], blob[-64:]
    if len(blob) < 64 or hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CorruptCheckpointError(f"{path}: checksum mismatch (truncated or corrupt)")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle the safe loader refuses is as untrustworthy as a torn one
        # torch explains a refusal in a dozen lines (with terminal escapes); the log gets the one naming the object.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        why = next((line for line in lines if line.startswith("WeightsUnpickler error: ")), lines[0])
        why = why.removeprefix("WeightsUnpickler error: ").split(". ")[0]
        raise CorruptCheckpointError(f"{path}: cannot be loaded safely (weights_only=True): {why}") from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CorruptCheckpointError(f"{path}: unknown checkpoint format {state.get('format')!r}")
    if state.get("variant_id") != variant_id:
        raise CorruptCheckpointError(
            f"{path}: belongs to variant {state.get('variant_id')!r}, not {variant_id!r}; refusing to resume from it"
        )
    return state
