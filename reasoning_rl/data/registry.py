"""Data set registry, bundled-file access with checksums, hub access and seeded subsampling."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from reasoning_rl.data.base import Problem
from reasoning_rl.errors import ConfigError, DataError
from reasoning_rl.registry import Registry

log = logging.getLogger(__name__)

Loader = Callable[[Mapping[str, Any], Mapping[str, Any]], list[Problem]]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    load: Loader
    grader: str  # name in reasoning_rl.grading's registry
    # What the grader needs from the data set's config besides the answer format (a task to score with).
    grader_options: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None


def _spec(name: str, load: Loader, grader: str | None = None, grader_options=None) -> DatasetSpec:
    return DatasetSpec(name=name, load=load, grader=grader or name, grader_options=grader_options)


# `@register_dataset(name, grader=..., grader_options=...)` on a loader `load(dataset_cfg, prompt_cfg)`; a
# new module in reasoning_rl/data/ that registers one is found without an import list. A name is refused
# twice: a second loader silently replacing the first would change what `dataset=NAME` loads depending on
# import order.
DATASETS: Registry[DatasetSpec] = Registry("dataset", package="reasoning_rl.data", entry=_spec)
register_dataset = DATASETS.register


def get_dataset(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def bundled_dir(name: str) -> Path:
    return Path(str(resources.files("reasoning_rl.data") / "files" / name))


def _expected_checksums(folder: Path) -> dict[str, str]:
    sums = folder / "SHA256SUMS"
    if not sums.exists():
        raise DataError(f"{sums} is missing; reinstall the package")
    pairs = (line.split() for line in sums.read_text().splitlines() if line.strip())
    return {filename: digest for digest, filename in pairs}


def read_bundled_bytes(name: str, filename: str) -> bytes:
    """A bundled file's bytes, refused if its sha256 differs from the recorded one."""
    folder = bundled_dir(name)
    path = folder / filename
    expected = _expected_checksums(folder).get(filename)
    if expected is None:
        raise DataError(f"{path} has no recorded sha256 in SHA256SUMS")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read bundled data file {path}: {exc.strerror}") from exc
    if hashlib.sha256(data).hexdigest() != expected:
        raise DataError(
            f"{path} fails its sha256 check (corrupted or edited); reinstall the package "
            "or use dataset.source=hub"
        )
    return data


def read_bundled_jsonl(name: str, filename: str) -> list[dict]:
    rows = []
    for number, line in enumerate(read_bundled_bytes(name, filename).decode().splitlines(), start=1):
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{bundled_dir(name) / filename} line {number} is not valid JSON ({exc.msg})") from None
    return rows


def load_hub_rows(hub_id: str, hub_config: str | None, split: str) -> list[dict]:
    import datasets

    try:
        return list(datasets.load_dataset(hub_id, hub_config, split=split))
    except Exception as exc:  # datasets raises many types for offline / missing / gated
        raise DataError(
            f"cannot load {hub_id!r} ({hub_config}, split {split}) from the Hugging Face hub: "
            f"{type(exc).__name__}; check the network / HF_TOKEN, or use dataset.source=bundled"
        ) from exc


def select_rows(rows: list, *, limit: int | None, sample: str = "first", seed: int = 0) -> list:
    """The first `limit` rows, or a seeded random subset of `limit` rows kept in file order; a limit
    above the number of rows is an error."""
    if limit is None:
        return rows
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ConfigError(f"dataset.limit must be a positive integer or null, got {limit!r}")
    # Fewer problems than asked for would be a smaller eval than the one named (none at all: load_problems says so).
    if rows and limit > len(rows):
        raise ConfigError(f"dataset.limit={limit} is more than the {len(rows)} problems of this split (for the train "
                          f"job's evaluation: eval.limit); ask for at most {len(rows)}, or null for all")
    if sample == "first":
        return rows[:limit]
    if sample == "random":
        keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
        return [rows[i] for i in keep]
    raise ConfigError(f"dataset.sample={sample!r} is not one of ['first', 'random']")


def resolve_split(dataset: str, split: str, splits: Mapping[str, str]) -> str:
    """The data set's own name for `split`; `splits` maps every accepted name (aliases too) to it, so the
    train job's generic dataset.split=train / eval.split=test work for every data set."""
    if split not in splits:
        raise DataError(f"dataset.split={split!r}: {dataset} has splits {sorted(splits)}")
    return splits[split]


def drop_bad_rows(
    rows: list[tuple[str, Any]], problem_of: Callable[[Any], str | None], *, on_bad_row: str, where: str
) -> list[tuple[str, Any]]:
    """(id, row) pairs whose row `problem_of` finds nothing wrong with; the others are skipped with one
    counted warning (dataset.on_bad_row=skip) or end the job naming the row (error)."""
    if on_bad_row not in ("skip", "error"):
        raise ConfigError(f"dataset.on_bad_row={on_bad_row!r} is not one of ['skip', 'error']")
    kept, bad = [], []
    for row_id, row in rows:
        reason = problem_of(row)
        if reason is None:
            kept.append((row_id, row))
            continue
        if on_bad_row == "error":
            raise DataError(f"{where}: bad row {row_id}: {reason} (dataset.on_bad_row=skip skips such rows)")
        bad.append(f"{row_id} ({reason})")
    if bad:
        log.warning("%s: skipped %d bad row(s) of %d: %s", where, len(bad), len(rows), "; ".join(bad[:5]))
    return kept
