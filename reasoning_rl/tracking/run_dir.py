"""The run directory: the one place a run's results live, written so a crash never looks like success.

    .hydra/           resolved config + overrides (Hydra), secrets redacted
    provenance.json   git sha, package versions, seed, host, command
    status.json       running | completed | failed (+ error), updated as the run goes
    metrics.jsonl     every logged value, one JSON object per event, appended and flushed
    samples.jsonl     per-problem completions and grades (written whole, atomically)
    samples_step<N>.jsonl   the same for each in-training evaluation (train job)
    summary.json      final metrics; written last and atomically, so its presence means "done"
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from reasoning_rl.errors import UserError


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy / torch scalars
        return _jsonable(value.item())
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=_jsonable)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_jsonl_atomic(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, default=_jsonable) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def is_main_process() -> bool:
    """Rank 0 of a multi-process (accelerate/torchrun/SLURM) job, or a single process."""
    return int(os.environ.get("RANK", "0")) == 0


class RunDir:
    """Every process of a multi-GPU job shares the dir; only the main one writes results to it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.main = is_main_process()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"output dir {self.path} is not writable ({exc.strerror}); set hydra.run.dir") from exc

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def samples_path(self) -> Path:
        return self.path / "samples.jsonl"

    def set_status(self, status: str, **extra: Any) -> None:
        if not self.main:
            return
        write_json_atomic(self.path / "status.json", {"status": status, "time": time.time(), **extra})

    def append_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        if not self.main:
            return
        record = {"step": step, "time": round(time.time(), 3), **{k: _jsonable(v) for k, v in metrics.items()}}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def write_samples(self, records: Iterable[Mapping[str, Any]], name: str = "samples.jsonl") -> Path:
        path = self.path / name
        if not self.main:
            return path
        write_jsonl_atomic(path, records)
        return path

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        if not self.main:
            return
        write_json_atomic(self.summary_path, summary)
