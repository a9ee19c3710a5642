"""Data sets: each yields Problems (id, chat messages, gold answer) and names its grader.

A data set is a loader registered by name in one module of this package (`@register_dataset`); the
registry imports the package's modules when a name is looked up, so there is no import list here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reasoning_rl.data.base import Problem
from reasoning_rl.data.contamination import check_contamination
from reasoning_rl.data.registry import DATASETS, DatasetSpec, get_dataset, register_dataset
from reasoning_rl.errors import DataError


def load_problems(dataset_cfg: Mapping[str, Any], prompt_cfg: Mapping[str, Any]) -> tuple[list[Problem], str]:
    """The configured problems and the name of the grader that scores them."""
    spec = get_dataset(dataset_cfg["name"])
    problems = spec.load(dataset_cfg, prompt_cfg)
    if not problems:  # an empty file or split: every metric would be a mean over nothing
        raise DataError(f"dataset {dataset_cfg['name']!r} (split {dataset_cfg.get('split')!r}) has no problems")
    return problems, dataset_cfg.get("grader") or spec.grader


def grader_options(dataset_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments the data set's grader needs besides the answer format (e.g. the task to score with)."""
    spec = get_dataset(dataset_cfg["name"])
    return spec.grader_options(dataset_cfg) if spec.grader_options else {}


__all__ = ["DATASETS", "DatasetSpec", "Problem", "check_contamination", "get_dataset", "grader_options",
           "load_problems", "register_dataset"]
