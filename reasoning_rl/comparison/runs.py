"""Run dirs as the compare job sees them: status, flattened config, summary, curve and samples.

A PATH given to compare is one of
  - a run dir: it has `.hydra/config.yaml` (written before the job starts) or `status.json`;
  - a sweep dir: its `sweep.json` manifest lists the members, also those that never started
    (they show with the manifest's status: pending, cancelled, failed);
  - any folder holding run dirs below it (a Hydra multirun dir, `outputs/`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from reasoning_rl.errors import UserError
from reasoning_rl.launching import manifest as sweep_manifest
from reasoning_rl.tracking.run_dir import read_jsonl

# Config keys that say where or how a run was recorded, not what it did.
IGNORED_PREFIXES = ("hydra.",)
# Sweep statuses that overrule a run dir still saying "running": a job killed by SLURM (out of
# memory, time limit) never wrote its end; a preempted one waits in the queue.
_KILLED = {"failed", "cancelled", "requeued", "pending"}
# A value that is exactly one node reference, `${seed}`: followed within the file. Anything else
# with `${` (`${oc.env:…}`, other resolvers, `a/${b}`) is shown as written: a run dir is data, and
# resolving it would read this machine's environment or run a resolver.
_REFERENCE = re.compile(r"\$\{([A-Za-z_][\w-]*(?:\.[\w-]+)*)\}")


@dataclass
class Run:
    path: Path
    name: str
    status: str  # completed | failed | preempted | running | unknown, or a sweep member's pending/cancelled/…
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # flattened, plain references followed
    summary: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> {mean, ci_low, ci_high, n}
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl
    sweep_group: str | None = None  # the W&B group of the sweep it came from
    parent: dict[str, Any] | None = None  # provenance.json's "parent" (warm start); absent in older runs

    @property
    def job(self) -> str:
        return str(self.config.get("job_name") or "?")

    @property
    def has_samples(self) -> bool:
        return (self.path / "samples.jsonl").is_file()

    @cached_property
    def samples(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "samples.jsonl")


def is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file() or (path / "status.json").is_file()


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    if not isinstance(obj, Mapping):
        return {prefix: obj} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def follow_references(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`{"a": "${b}", "b": 1}` -> `{"a": 1, "b": 1}`; no resolver runs, the environment is not read."""
    def value(v: Any) -> Any:
        for _ in range(len(flat)):  # a chain of references ends, a cycle stays as written
            match = _REFERENCE.fullmatch(v) if isinstance(v, str) else None
            if match is None or match.group(1) not in flat:
                return v
            v = flat[match.group(1)]
        return v

    return {k: value(v) for k, v in flat.items()}


def load_config(run_dir: Path) -> dict[str, Any]:
    """The saved `.hydra/config.yaml`, read without resolving, flattened, plain references followed."""
    from omegaconf import OmegaConf

    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    container = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    flat = follow_references(flatten(container))
    return {k: v for k, v in flat.items() if not k.startswith(IGNORED_PREFIXES)}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_run(path: Path, name: str, fallback_status: str | None = None, fallback_error: str | None = None,
             sweep_group: str | None = None) -> Run:
    """Everything compare needs from one run dir; a dir that does not exist (a sweep member that
    never started) gives a Run with the manifest's status and nothing else."""
    own = _read_json(path / "status.json") or {}
    summary = _read_json(path / "summary.json") or {}
    status = own.get("status") or ("completed" if summary else fallback_status or "unknown")
    if status == "running" and fallback_status in _KILLED:  # SLURM knows what the job could not report
        status = fallback_status
    error = own.get("error") or own.get("message") or (fallback_error if status == fallback_status else None)
    rows = read_jsonl(path / "metrics.jsonl") if (path / "metrics.jsonl").is_file() else []
    summary = {k: v for k, v in summary.items() if isinstance(v, Mapping) and "mean" in v}
    provenance = _read_json(path / "provenance.json")
    parent = provenance.get("parent") if isinstance(provenance, Mapping) else None
    return Run(path=path, name=name, status=status, error=error, config=load_config(path),
               summary=summary, rows=rows, sweep_group=sweep_group,
               parent=parent if isinstance(parent, Mapping) else None)


@dataclass
class _Found:
    path: Path
    status: str | None = None
    error: str | None = None
    sweep_group: str | None = None


def _sweep_members(sweep_dir: Path) -> list[_Found]:
    try:
        manifest = sweep_manifest.load(sweep_dir)
        members = [(m, Path(m["run_dir"])) for m in manifest.get("members", [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{sweep_dir}/{sweep_manifest.FILENAME} is unreadable ({exc})") from None
    found = []
    for member, run_dir in members:
        if not run_dir.exists():  # the sweep dir was moved or copied: find the member relative to it
            try:
                moved = sweep_dir / run_dir.relative_to(manifest.get("sweep_dir", ""))
            except ValueError:
                moved = sweep_dir / str(member.get("num", ""))
            run_dir = moved if moved.exists() else run_dir
        found.append(_Found(run_dir, member.get("status"), member.get("error"), manifest.get("wandb_group")))
    return found


def expand_paths(paths: Iterable[str | Path]) -> list[_Found]:
    """Run dirs named by PATHs (run dir, sweep dir, folder of run dirs), in order, without repeats."""
    found: list[_Found] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise UserError(f"{raw}: no such run dir")
        if is_run_dir(path):
            found.append(_Found(path))
        elif (path / sweep_manifest.FILENAME).is_file():
            found.extend(_sweep_members(path))
        else:
            nested = sorted({p.parent.parent for p in path.rglob(".hydra/config.yaml")}
                            | {p.parent for p in path.rglob("status.json")})
            if not nested:
                raise UserError(f"{raw} is not a run dir (no .hydra/config.yaml or status.json), "
                                f"a sweep dir (no {sweep_manifest.FILENAME}) or a folder of run dirs")
            found.extend(_Found(p) for p in nested)
    unique: dict[Path, _Found] = {}
    for item in found:
        unique.setdefault(item.path.resolve(), item)
    return list(unique.values())


def unique_names(paths: Sequence[Path]) -> list[str]:
    """The shortest path tails that tell the runs apart: /a/x/0, /a/y/0 -> x/0, y/0."""
    parts = [Path(p).resolve().parts for p in paths]
    for depth in range(1, max((len(p) for p in parts), default=1) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    found = expand_paths(paths)
    names = unique_names([f.path for f in found])
    return [load_run(f.path, name, f.status, f.error, f.sweep_group) for f, name in zip(found, names)]


def find_run(runs: Sequence[Run], key: str) -> Run:
    """A run by its path or its name in the table."""
    path = Path(key).expanduser()
    for run in runs:
        if path.exists() and run.path.resolve() == path.resolve():
            return run
    for run in runs:
        if run.name == key:
            return run
    raise UserError(f"--baseline {key!r} is none of the compared runs: {', '.join(r.name for r in runs)}")
