"""nin/store.py: atomic writes (old file or new file, never half), temp-file cleanup, checkpoints with a checksum.

Covered elsewhere, not repeated here: a checkpoint of another variant is refused (tests/nin/test_train.py), kills at
a real run's checkpoint/result writes and their resume (tests/runners/test_until_resolved.py,
tests/runners/test_runner.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import signal
import stat
from collections import Counter, OrderedDict
from pathlib import Path

import pytest
import torch

from nin import store
from nin.layout import RESULT_FILE

OLD = b'{"test_acc": 0.5}\n'


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


def test_a_write_replaces_the_file_whole_with_the_usual_permissions(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "run" / "result.json"  # missing parents are made
    store.atomic_write_bytes(target, OLD)
    store.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600
    assert _leftovers(target.parent) == []


@pytest.mark.parametrize("failing", ["fsync", "replace"])
@pytest.mark.parametrize("existed", [True, False])
def test_a_write_that_fails_midway_leaves_the_old_file_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str, existed: bool
) -> None:
    target = tmp_path / RESULT_FILE
    if existed:
        target.write_bytes(OLD)
    seen: list[bytes] = []

    def crash(*args: object) -> None:
        # By now the new bytes sit complete in a temp file beside the target: the crash comes before the rename.
        (temp,) = [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
        seen.append(temp.read_bytes() if failing == "replace" else b"")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.os, failing, crash)
    with pytest.raises(OSError, match="No space left"):
        store.write_json(target, {"test_acc": 0.9})
    monkeypatch.undo()
    if failing == "replace":
        assert json.loads(seen[0]) == {"test_acc": 0.9}
    assert (target.read_bytes() if target.exists() else None) == (OLD if existed else None)
    assert _leftovers(tmp_path) == []  # the failed write cleans up its temp file


def test_an_interrupt_midway_also_removes_the_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "metrics.jsonl"
    target.write_bytes(OLD)

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C is a BaseException, not an Exception

    monkeypatch.setattr(store.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.write_metrics(target, [{"epoch": 1}])
    monkeypatch.undo()
    assert target.read_bytes() == OLD and _leftovers(tmp_path) == []


def test_a_kill_before_the_rename_leaves_the_old_file_and_a_temp_that_cleanup_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A SIGKILL runs no cleanup: the real thing, in a forked child, through the store's own kill hook.
    target = tmp_path / RESULT_FILE
    target.write_bytes(OLD)
    monkeypatch.setenv(store.TEST_KILL_ENV, "result:1")
    monkeypatch.setattr(store, "_test_kill_writes", Counter())
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            store.write_json(target, {"a": 1})
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert target.read_bytes() == OLD
    (left,) = _leftovers(tmp_path)
    assert left.startswith(f".{RESULT_FILE}.tmp-")
    assert json.loads((tmp_path / left).read_bytes()) == {"a": 1}  # complete, but never renamed into place
    assert store.remove_temp_files(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [RESULT_FILE] and target.read_bytes() == OLD


def test_remove_temp_files_removes_only_temp_names(tmp_path: Path) -> None:
    names = [".result.json.tmp-a1", ".checkpoint.pt.tmp-b2", "result.json", "notes.tmp-1", ".hidden", "tmp-x"]
    for name in names:
        (tmp_path / name).write_text("x")
    assert store.remove_temp_files(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])
    assert store.remove_temp_files(tmp_path) == 0
    assert store.remove_temp_files(tmp_path / "never-made") == 0


def test_write_json_is_indented_json_ending_in_a_newline(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    store.write_json(target, {"run_dir": tmp_path, "acc": 0.5, "none": None})
    text = target.read_text()
    assert text.endswith("}\n") and '\n "acc": 0.5' in text
    assert json.loads(text) == {"run_dir": str(tmp_path), "acc": 0.5, "none": None}  # paths as strings


def test_write_json_refuses_nan_and_keeps_the_old_file(tmp_path: Path) -> None:
    # NaN is not JSON: a result.json with one would break every strict reader of the results directory.
    target = tmp_path / "r.json"
    target.write_bytes(OLD)
    with pytest.raises(ValueError, match="JSON compliant"):
        store.write_json(target, {"test_acc": math.nan})
    assert target.read_bytes() == OLD and _leftovers(tmp_path) == []


def test_write_metrics_is_one_json_line_per_epoch(tmp_path: Path) -> None:
    history = [{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": math.nan}]  # a diverged epoch is kept
    store.write_metrics(tmp_path / "m.jsonl", history)
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == history[0]
    assert math.isnan(json.loads(lines[1])["train_loss"])


STATE = {
    "variant_id": "d2l-gap-cccp2-do1-s0-abcdef",
    "epoch": 3,
    "model": OrderedDict(weight=torch.arange(6.0).reshape(2, 3), bias=torch.tensor([0.5, -0.5])),
    "history": [{"epoch": 1, "test_acc": 0.5}, {"epoch": 2, "test_acc": 0.75}],
    "rng": torch.tensor([1, 2, 3], dtype=torch.uint8),
}


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    store.save_checkpoint(path, STATE)
    loaded = store.load_checkpoint(path, STATE["variant_id"])
    assert loaded["format"] == store.CHECKPOINT_FORMAT
    assert set(loaded) == {"format", *STATE}
    assert (loaded["epoch"], loaded["history"]) == (3, STATE["history"])
    assert torch.equal(loaded["model"]["weight"], STATE["model"]["weight"])
    assert torch.equal(loaded["model"]["bias"], STATE["model"]["bias"]) and torch.equal(loaded["rng"], STATE["rng"])
    # The file is torch.save's bytes followed by their sha256 in hex.
    blob = path.read_bytes()
    assert blob[-64:] == hashlib.sha256(blob[:-64]).hexdigest().encode()


@pytest.mark.parametrize("damage", ["truncated", "flipped", "tiny", "empty"])
def test_a_torn_checkpoint_is_refused(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "checkpoint.pt"
    store.save_checkpoint(path, STATE)
    blob = bytearray(path.read_bytes())
    if damage == "truncated":  # the tail of a write cut short
        blob = blob[: len(blob) // 2]
    elif damage == "flipped":
        blob[100] ^= 0xFF
    elif damage == "tiny":
        blob = blob[:10]
    else:
        blob = bytearray()
    path.write_bytes(bytes(blob))
    with pytest.raises(store.CorruptCheckpointError, match="checksum mismatch"):
        store.load_checkpoint(path, STATE["variant_id"])


def _with_footer(path: Path, obj: object) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    path.write_bytes(payload + hashlib.sha256(payload).hexdigest().encode())


def test_a_checkpoint_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    _with_footer(path, {"format": store.CHECKPOINT_FORMAT + 1, "variant_id": "v"})
    with pytest.raises(store.CorruptCheckpointError, match=f"unknown checkpoint format {store.CHECKPOINT_FORMAT + 1}"):
        store.load_checkpoint(path, "v")


class Payload:
    """Not a tensor or a container: torch.load(weights_only=True) must not unpickle it."""


def test_a_checkpoint_holding_arbitrary_objects_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    _with_footer(path, {"format": store.CHECKPOINT_FORMAT, "variant_id": "v", "extra": Payload()})
    with pytest.raises(store.CorruptCheckpointError) as info:
        store.load_checkpoint(path, "v")
    message = str(info.value)
    assert message.startswith(f"{path}: cannot be loaded safely (weights_only=True): ")
    assert "\n" not in message and "\x1b" not in message and "Payload" in message
