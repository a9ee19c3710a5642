"""GSM8K (Cobbe et al. 2021): grade-school math word problems with integer answers.

Bundled: the train/test files of openai/grade-school-math (MIT) inside the package, checked against
SHA256SUMS on every load. Hub: `openai/gsm8k` config `main` through `datasets.load_dataset`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from reasoning_rl.data.base import Problem
from reasoning_rl.data.registry import read_bundled_jsonl, register_dataset, select_rows
from reasoning_rl.errors import DataError
from reasoning_rl.prompts import build_messages, render_solution

_CALCULATOR = re.compile(r"<<[^>]*>>")
SPLITS = ("train", "test")


def parse_answer_field(answer: str) -> tuple[str, str]:
    """Split GSM8K's `answer` into (reasoning without <<calc>> annotations, final answer without commas)."""
    if "####" not in answer:
        raise DataError(f"GSM8K row has no '####' final answer: {answer[:60]!r}")
    reasoning, final = answer.rsplit("####", 1)
    return _CALCULATOR.sub("", reasoning).strip(), final.strip().replace(",", "")


def _load_rows(cfg: Mapping[str, Any], split: str) -> list[dict]:
    if split not in SPLITS:
        raise DataError(f"dataset.split={split!r}: GSM8K has splits {list(SPLITS)}")
    if cfg["source"] == "bundled":
        return read_bundled_jsonl("gsm8k", f"{split}.jsonl")
    from reasoning_rl.data.registry import load_hub_rows

    return load_hub_rows(cfg["hub_id"], cfg.get("hub_config"), split)


@register_dataset("gsm8k")
def load_gsm8k(cfg: Mapping[str, Any], prompt_cfg: Mapping[str, Any]) -> list[Problem]:
    rows = _load_rows(cfg, cfg["split"])
    # Row index in the original file is the stable id, so subsamples of different runs can be paired.
    indexed = [(f"gsm8k/{cfg['split']}/{i}", row) for i, row in enumerate(rows)]
    indexed = select_rows(indexed, limit=cfg.get("limit"), sample=cfg.get("sample", "first"), seed=cfg["seed"])

    few_shot = []
    if cfg.get("few_shot", 0):
        # Shots always come from train, so an eval on test never sees its own problems as examples.
        train = _load_rows(cfg, "train")
        for row in train[: cfg["few_shot"]]:
            reasoning, final = parse_answer_field(row["answer"])
            few_shot.append((row["question"], render_solution(reasoning, final, prompt_cfg)))

    problems = []
    for problem_id, row in indexed:
        reasoning, final = parse_answer_field(row["answer"])
        problems.append(
            Problem(
                id=problem_id,
                messages=build_messages(row["question"], prompt_cfg, few_shot),
                gold=final,
                solution=render_solution(reasoning, final, prompt_cfg),
                meta={"question": row["question"]},
            )
        )
    return problems
