"""Read back what an offline W&B run wrote: `RUN_DIR/wandb/offline-run-*/run-*.wandb`.

wandb 0.31 cannot read its own transaction log, so tests (and anyone checking a run before `wandb sync`)
use this: the file is a 7-byte header (`:W&B`, magic 0xBEE1, version 0) and then LevelDB log framing —
32 KiB blocks of chunks, each `crc32 (4) | length (2, little-endian) | type (1)` and its payload
(type 1 = a whole record, 2/3/4 = first/middle/last piece) — around `wandb_internal_pb2.Record`s.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7  # both the file header and each chunk header
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> Iterator[bytes]:
    if data[:4] != b":W&B":
        raise ValueError("not a W&B transaction log (no ':W&B' header)")
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # the block's tail is padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        pos += HEADER
        chunk = data[pos:pos + length]
        pos += length
        if kind == 0 and length == 0:  # zero padding
            continue
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


def read_records(path: str | Path, wait_s: float = 0.0) -> list[Any]:
    """Every `Record` of one `run-*.wandb` file, in order.

    `run.finish()` can return before W&B's service has flushed the file (when the process goes on, as
    in a test): wait_s > 0 waits up to that long for the run's `exit` record to be written.
    """
    from wandb.proto import wandb_internal_pb2

    deadline = time.monotonic() + wait_s
    while True:
        records = []
        for payload in _payloads(Path(path).read_bytes()):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            records.append(record)
        if time.monotonic() >= deadline or any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        time.sleep(0.1)


def offline_run_files(run_dir: str | Path) -> list[Path]:
    """The transaction logs of a run dir's offline W&B runs (one per process that ran the job)."""
    return sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))


def summarize_records(records: list[Any]) -> dict[str, Any]:
    """The parts tests look at: run settings, config, logged keys, artifacts, stats, files."""
    out: dict[str, Any] = {"run": None, "config": {}, "history": [], "artifacts": [], "stats": 0, "files": []}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            for item in record.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                                   for i in record.history.item})
        elif kind == "artifact":
            out["artifacts"].append(record.artifact)
        elif kind == "stats":
            out["stats"] += 1
        elif kind == "files":
            out["files"].extend(f.path for f in record.files.files)
    return out
