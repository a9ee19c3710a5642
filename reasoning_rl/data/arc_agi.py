"""ARC-AGI grid puzzles (Chollet 2019; ARC Prize 2025): infer a transformation from example pairs.

`arc_agi1` (400 training + 400 evaluation tasks) and `arc_agi2` (1000 + 120). Bundled: the public
task files (Apache-2.0, see files/arc_agi/NOTICE), sha256-checked on every load. Splits `training`
and `evaluation`; `train` and `test` are aliases, so the train job's defaults (dataset.split=train,
eval.split=test) train on training and evaluate on evaluation.

The prompt shows every train pair and one test input as text grids (data/grids.py); the gold answer is
the test output's canonical grid string. A task with several test inputs gives one problem per input,
`<dataset>/<split>/<task id>#<i>`. `max_prompt_tokens` keeps the problems whose prompt fits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from reasoning_rl.data.base import Problem
from reasoning_rl.data.grids import canonical_grid, grid_problem, render_grid
from reasoning_rl.data.registry import (
    drop_bad_rows,
    read_bundled_bytes,
    register_dataset,
    resolve_split,
    select_rows,
)
from reasoning_rl.errors import ConfigError
from reasoning_rl.prompts import apply_chat_template, build_messages

log = logging.getLogger(__name__)

FOLDERS = {"arc_agi1": "arc_agi/arc-agi-1", "arc_agi2": "arc_agi/arc-agi-2"}
SPLITS = {"training": "training", "train": "training", "evaluation": "evaluation", "eval": "evaluation",
          "test": "evaluation"}

INTRO = (
    "Each example below shows an input grid and its output grid. A grid is written one row per line, "
    "one digit per cell; the digits 0-9 are colours. Find the rule that turns every example input into "
    "its output, then apply it to the test input."
)
OUTRO = "Answer with the test output grid, one row per line, written like the grids above."


def task_problem(task: Any) -> str | None:
    """What makes a task unusable (nothing to learn from, nothing to grade, a malformed grid), or None."""
    if not isinstance(task, Mapping):
        return "task is not an object"
    train, test = task.get("train"), task.get("test")
    if not isinstance(train, list) or not train:
        return "empty task: no train pairs"
    if not isinstance(test, list) or not test:
        return "empty task: no test pairs"
    for part, pairs in (("train", train), ("test", test)):
        for i, pair in enumerate(pairs):
            for side in ("input", "output"):
                if not isinstance(pair, Mapping) or side not in pair:
                    return f"{part} pair {i} has no {side}"
                reason = grid_problem(pair[side])
                if reason:
                    return f"{part} pair {i} {side}: {reason}"
    return None


def format_task(task: Mapping[str, Any], test_index: int, separator: str = "") -> str:
    blocks = [INTRO]
    for i, pair in enumerate(task["train"], 1):
        blocks.append(f"Example {i}\nInput:\n{render_grid(pair['input'], separator)}\n"
                      f"Output:\n{render_grid(pair['output'], separator)}")
    blocks.append(f"Test input:\n{render_grid(task['test'][test_index]['input'], separator)}")
    blocks.append(OUTRO)
    return "\n\n".join(blocks)


def approx_tokens(text: str) -> int:
    """Tokens as a digit-splitting tokenizer (SmolLM2, Llama 2, Qwen) spends them: one per digit and
    line break, about one per four other characters. Llama 3 groups digits, so this overestimates there."""
    digits_and_breaks = sum(char.isdigit() or char == "\n" for char in text)
    return digits_and_breaks + (len(text) - digits_and_breaks + 3) // 4


def prompt_token_counter(cfg: Mapping[str, Any]):
    """Counts a problem's prompt tokens with the model's tokenizer and chat template (dataset.tokenizer,
    the model config), or with `approx_tokens` when that is null."""
    tokenizer_cfg = cfg.get("tokenizer")
    if not tokenizer_cfg:
        return lambda messages: approx_tokens("\n".join(m["content"] for m in messages))
    from reasoning_rl import models  # lazily: only a length filter needs the tokenizer

    tokenizer = models.load_tokenizer(tokenizer_cfg)
    return lambda messages: len(
        tokenizer(apply_chat_template(tokenizer, messages), add_special_tokens=False)["input_ids"])


def load_tasks(name: str, split: str) -> dict[str, Any]:
    return json.loads(read_bundled_bytes(FOLDERS[name], f"{split}.json"))


def load_arc_agi(cfg: Mapping[str, Any], prompt_cfg: Mapping[str, Any]) -> list[Problem]:
    if cfg.get("source", "bundled") != "bundled":
        raise ConfigError(f"dataset.source={cfg['source']!r}: {cfg['name']} is read from the bundled files only")
    if cfg.get("few_shot", 0):
        raise ConfigError(f"dataset.few_shot: {cfg['name']} prompts already hold worked examples (the train pairs)")
    split = resolve_split(cfg["name"], cfg["split"], SPLITS)
    where = f"{cfg['name']}/{split}"
    tasks = drop_bad_rows(list(load_tasks(cfg["name"], split).items()), task_problem,
                          on_bad_row=cfg.get("on_bad_row", "skip"), where=where)
    separator = cfg.get("grid_separator") or ""

    problems = []
    for task_id, task in tasks:
        for i, pair in enumerate(task["test"]):
            problems.append(Problem(
                id=f"{where}/{task_id}#{i}",
                messages=build_messages(format_task(task, i, separator), prompt_cfg),
                gold=canonical_grid(pair["output"]),
                solution=None,  # no worked solutions: SFT needs algorithm.source=self
                meta={"source_id": task_id, "task_id": task_id, "test_index": i},
            ))

    max_tokens = cfg.get("max_prompt_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise ConfigError(f"dataset.max_prompt_tokens must be a positive integer or null, got {max_tokens!r}")
        count = prompt_token_counter(cfg)
        total = len(problems)
        problems = [p for p in problems if count(p.messages) <= max_tokens]
        how = "the model's tokenizer" if cfg.get("tokenizer") else "approx_tokens"
        log.info("%s: %d of %d test inputs (%d tasks) fit max_prompt_tokens=%d (%s); dropped %d",
                 where, len(problems), total, len({p.meta["task_id"] for p in problems}), max_tokens, how,
                 total - len(problems))
    return select_rows(problems, limit=cfg.get("limit"), sample=cfg.get("sample", "first"), seed=cfg["seed"])


for _name in FOLDERS:
    register_dataset(_name, grader="grid")(load_arc_agi)
