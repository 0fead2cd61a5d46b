"""Reading wandb's offline run files back (run-<id>.wandb), for tests: wandb 0.31 ships no Python reader."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

# The run file is a LevelDB-style log of protobuf Records after a 7-byte ":W&B" header.
BLOCK, HEADER = 32768, 7
FULL, LAST = 1, 4


def read_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    if len(data) < HEADER:  # not written yet
        return []
    assert data[:4] == b":W&B"
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if pos + HEADER + length > len(data):  # still being written
            break
        pending += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


class OfflineRun:
    """What one offline run directory says: run fields, config, history rows, summary, exit code."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        wandb_files = list(run_dir.glob("run-*.wandb"))
        self.run, self.config, self.history, self.summary, self.exit_code = None, {}, [], {}, None
        for record in read_records(wandb_files[0]) if wandb_files else []:
            kind = record.WhichOneof("record_type")
            if kind == "run":
                self.run = record.run  # the last run record carries the tags set at finish
                self.config.update({u.key: json.loads(u.value_json) for u in record.run.config.update})
            elif kind == "history":
                row: dict = {}
                for item in record.history.item:
                    _put(row, item)
                self.history.append(row)
            elif kind == "summary":
                for item in record.summary.update:
                    _put(self.summary, item)
            elif kind == "exit":
                self.exit_code = record.exit.exit_code


def _put(target: dict, item) -> None:
    # A media value (table, image) arrives as one item per field: nested_key ["tables/results", "path"].
    *parents, leaf = [item.key] if item.key else list(item.nested_key)
    for parent in parents:
        target = target.setdefault(parent, {})
    target[leaf] = json.loads(item.value_json)


def offline_runs(wandb_dir: Path, timeout: float = 20, unfinished: int = 0) -> list[OfflineRun]:
    """Every offline run, once all but `unfinished` of them have their exit record (a process killed before W&B
    wrote it leaves a run without one for good). wandb's service writes the run file after run.finish() returns, so
    wait for it, up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        runs = [OfflineRun(d) for d in sorted((wandb_dir / "wandb").glob("offline-run-*"))]
        if sum(run.exit_code is None for run in runs) <= unfinished or time.monotonic() > deadline:
            return runs
        time.sleep(0.1)
