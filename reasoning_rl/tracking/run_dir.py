"""The run directory: the one place a run's results live, written so a crash never looks like success.

    .hydra/           resolved config + overrides (Hydra), secrets redacted
    provenance.json   git sha, package versions, seed, host, command
    status.json       running | completed | failed (+ error), updated as the run goes
    metrics.jsonl     every logged value, one JSON object per event, appended and flushed
    samples.jsonl     per-problem completions and grades (written whole, atomically)
    samples_step<N>.jsonl   the same for each in-training evaluation (train job)
    results.json, samples_<task>.jsonl   the final evaluation in lm-evaluation-harness's format
                      (tracking/lm_eval_format.py), written just before summary.json
    summary.json      final metrics; written last and atomically, so its presence means "done"
    stale-<time>/     results of an earlier run in the same dir, moved aside when a job starts anew
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from reasoning_rl import parallel
from reasoning_rl.errors import DataError, UserError

log = logging.getLogger(__name__)
# The umask, read once: os.umask can only be read by setting it, which races with other threads later.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_STEP_SAMPLES = re.compile(r"samples_step\d+\.jsonl")  # the train job's curve; other samples_*.jsonl are lm-eval's


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy / torch scalars
        return _jsonable(value.item())
    return value


def _write_atomic(path: Path, write: Callable[[TextIO], None]) -> None:
    """Write to a temp file of its own in the same dir, then rename: readers see the old file or the new
    one, never half of one, and two writers of one path (a requeued task, a late rank) never share a temp."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # not mkstemp's 0600: the group may read results
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a kill signal turned exception: no temp file left behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str, errors: str = "strict") -> None:
    """`errors="surrogateescape"` writes back bytes that were read that way (a log that is not UTF-8)."""
    data = text.encode("utf-8", errors)
    _write_atomic(path, lambda f: (f.flush(), f.buffer.write(data)))


def write_json_atomic(path: Path, data: Any) -> None:
    def write(f: TextIO) -> None:
        json.dump(data, f, indent=2, default=_jsonable)
        f.write("\n")

    _write_atomic(path, write)


def write_jsonl_atomic(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    def write(f: TextIO) -> None:
        for row in rows:
            f.write(json.dumps(row, default=_jsonable) + "\n")

    _write_atomic(path, write)


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file. A last line cut short (the job was killed while appending to
    metrics.jsonl) is skipped with a warning; a bad line before it is an error naming the line."""
    with open(path) as f:
        lines = [(number, line) for number, line in enumerate(f, 1) if line.strip()]
    rows = []
    for index, (number, line) in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except ValueError as exc:
            if index < len(lines) - 1:
                raise DataError(f"{path}:{number} is not JSON ({exc}); the file is corrupt") from None
            log.warning("%s:%d: skipping a truncated last line (the run stopped while writing it)", path, number)
    return rows


def is_main_process() -> bool:
    """Rank 0 of a multi-process (accelerate/torchrun/SLURM) job, or a single process."""
    return parallel.rank() == 0


class RunDir:
    """Every process of a multi-GPU job shares the dir; only the main one writes results to it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.main = is_main_process()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".write-test-"):  # one per process: ranks race
                pass
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

    def set_aside_stale(self, resuming: bool) -> Path | None:
        """Move an earlier run's results into `stale-<time>/` as a job starts in its dir, so a crash
        of this one never leaves it looking finished with the old numbers. A resumed run keeps its
        metrics and per-step samples (the curve goes on); its final summary and samples are redone."""
        if not self.main:
            return None
        names = ["summary.json", "samples.jsonl", "results.json"]
        step_samples = sorted(p.name for p in self.path.glob("samples_*.jsonl") if _STEP_SAMPLES.fullmatch(p.name))
        names += sorted(p.name for p in self.path.glob("samples_*.jsonl") if p.name not in step_samples)  # lm-eval's
        if not resuming:
            names += ["metrics.jsonl", "eval_curves.png", *step_samples]
        found = [self.path / name for name in names if (self.path / name).exists()]
        if not found:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = self.path / f"stale-{stamp}"
        for n in range(1, 1000):  # two starts within a second (a quick failure, then a re-run)
            if not folder.exists():
                break
            folder = self.path / f"stale-{stamp}-{n}"
        folder.mkdir()
        for path in found:
            os.replace(path, folder / path.name)
        log.warning("%s held results of an earlier run (%s): moved to %s", self.path,
                    ", ".join(p.name for p in found), folder.name)
        return folder

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        if not self.main:
            return
        write_json_atomic(self.summary_path, summary)
