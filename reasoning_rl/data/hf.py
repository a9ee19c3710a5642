"""A user's own data set, without Python: a local JSON/JSONL/Parquet/CSV file or a Hugging Face hub data set,
its columns named in the config (conf/dataset/hf.yaml).

    dataset=hf dataset.path=my.jsonl dataset.columns.question=q dataset.columns.answer=a dataset.grader=numeric
    dataset=hf dataset.path=org/name dataset.hub_config=main dataset.split=test ...
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reasoning_rl.data.base import Problem
from reasoning_rl.data.registry import drop_bad_rows, register_dataset, select_rows
from reasoning_rl.errors import ConfigError, DataError
from reasoning_rl.prompts import build_messages, render_solution

# File suffix -> the `datasets` builder that reads it.
FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
REQUIRED_COLUMNS = ("question", "answer")
OPTIONAL_COLUMNS = ("solution", "id")


def _absolute(path: str) -> Path:
    """Relative to where the job was started (Hydra may have changed the working directory)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        from hydra.utils import to_absolute_path

        return Path(to_absolute_path(str(Path(path).expanduser())))
    return Path(path).expanduser().absolute()


def _looks_local(path: str) -> bool:
    return (Path(path).suffix.lower() in FORMATS or path.startswith((".", "/", "~"))
            or os.sep in path.strip("/").split("/", 1)[-1] or Path(path).expanduser().exists())


def _path_for_split(cfg: Mapping[str, Any], split: str) -> str:
    path = cfg.get("path")
    if isinstance(path, Mapping):  # dataset.path={train: a.jsonl, test: b.jsonl}
        if split not in path:
            raise DataError(f"dataset.split={split!r}: dataset.path names the splits {sorted(path)}")
        path = path[split]
    if not path or not isinstance(path, str):
        raise ConfigError("dataset=hf needs dataset.path: a .jsonl/.json/.parquet/.csv file, a {split: file} "
                          "mapping or a hub data set name (org/name)")
    return path


def load_rows(cfg: Mapping[str, Any], split: str) -> tuple[list[dict], str]:
    """The rows of `split` and where they came from (for messages and ids)."""
    import datasets

    path = _path_for_split(cfg, split)
    if _looks_local(path):
        file = _absolute(path)
        builder = FORMATS.get(file.suffix.lower())
        if builder is None:
            raise ConfigError(f"dataset.path={path}: unknown file type {file.suffix!r}; "
                              f"known: {', '.join(sorted(FORMATS))}")
        if not file.is_file():
            raise DataError(f"dataset.path={path}: no such file ({file})")
        try:
            rows = datasets.load_dataset(builder, data_files=str(file), split="train")
        except Exception as exc:  # a malformed file: pyarrow, pandas or json say why in many types
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"dataset.path={path}: cannot read it as {builder}: {reason[:200]}") from exc
        return list(rows), file.name
    try:
        rows = datasets.load_dataset(path, cfg.get("hub_config"), split=split)
    except Exception as exc:  # offline, missing, gated, no such split or config
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(f"cannot load {path!r} (config {cfg.get('hub_config')}, split {split}) from the Hugging Face "
                        f"hub: {type(exc).__name__}: {reason[:200]}; check the name, the network / HF_TOKEN, or "
                        f"give a local file") from exc
    return list(rows), path


def column_names(cfg: Mapping[str, Any]) -> dict[str, str]:
    """Our field -> the file's column, checked: question and answer are required, solution and id optional."""
    columns = dict(cfg.get("columns") or {})
    unknown = sorted(set(columns) - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS))
    if unknown:
        raise ConfigError(f"dataset.columns.{unknown[0]} is not a column setting; known: "
                          f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}")
    missing = [f"dataset.columns.{c}" for c in REQUIRED_COLUMNS if not columns.get(c)]
    if missing:
        raise ConfigError(f"dataset=hf needs {' and '.join(missing)}: the file's column that holds it")
    return {k: str(v) for k, v in columns.items() if v}


def _check_columns(rows: list[dict], columns: Mapping[str, str], where: str) -> None:
    have = list(rows[0]) if rows else []
    for field, column in columns.items():
        if column not in have:
            raise DataError(f"dataset.columns.{field}={column}: {where} has no column {column!r}; "
                            f"its columns: {', '.join(have)}")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():  # a CSV/Parquet number column: 18.0 -> "18"
        value = int(value)
    text = str(value).strip()
    return text or None


def _source_id(row: dict, columns: Mapping[str, str], question: str) -> str:
    if "id" in columns and _text(row[columns["id"]]) is not None:
        return f"hf:{_text(row[columns['id']])}"
    return f"hf:question-sha256:{hashlib.sha256(' '.join(question.split()).encode()).hexdigest()[:16]}"


def _check_grader(cfg: Mapping[str, Any]) -> None:
    from reasoning_rl.grading.graders import GRADERS

    grader = cfg.get("grader")
    if grader not in GRADERS:
        raise ConfigError(f"dataset.grader={grader!r} is not a grader; known: {', '.join(sorted(GRADERS))}")


@register_dataset("hf", grader="numeric")
def load_hf(cfg: Mapping[str, Any], prompt_cfg: Mapping[str, Any]) -> list[Problem]:
    _check_grader(cfg)
    columns = column_names(cfg)
    split = cfg.get("split") or "test"
    rows, where = load_rows(cfg, split)
    _check_columns(rows, columns, where)

    def id_of(i: int, row: dict) -> str:
        if "id" in columns and _text(row[columns["id"]]) is not None:
            return f"hf/{where}/{_text(row[columns['id']])}"
        return f"hf/{where}/{i}"

    indexed = [(id_of(i, row), row) for i, row in enumerate(rows)]
    ids = [row_id for row_id, _ in indexed]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"dataset.columns.id={columns.get('id')}: {where} has the id {duplicate.rsplit('/', 1)[-1]!r} "
                        f"more than once; ids must be unique (leave dataset.columns.id out to number the rows)")

    def problem_of(row: dict) -> str | None:
        for field in REQUIRED_COLUMNS:
            if _text(row[columns[field]]) is None:
                return f"empty {columns[field]}"
        return None

    indexed = drop_bad_rows(indexed, problem_of, on_bad_row=cfg.get("on_bad_row", "error"), where=where)
    indexed = select_rows(indexed, limit=cfg.get("limit"), sample=cfg.get("sample", "first"), seed=cfg.get("seed", 0))
    problems = []
    for problem_id, row in indexed:
        question, gold = _text(row[columns["question"]]), _text(row[columns["answer"]])
        reasoning = _text(row[columns["solution"]]) if "solution" in columns else None
        problems.append(Problem(
            id=problem_id,
            messages=build_messages(question, prompt_cfg),
            gold=gold,
            solution=render_solution(reasoning, gold, prompt_cfg) if reasoning else None,
            # The contamination guard compares these: the file's own id, else the question itself.
            meta={"question": question, "source_id": _source_id(row, columns, question)},
        ))
    return problems
