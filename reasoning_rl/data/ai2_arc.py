"""AI2 Reasoning Challenge (Clark et al. 2018): multiple-choice grade-school science questions.

`arc_easy` and `arc_challenge`. Bundled: the ARC-V1-Feb2018 files (CC BY-SA 4.0, see files/ai2_arc/LICENSE),
sha256-checked on every load. Hub: `allenai/ai2_arc`, config `ARC-Easy` / `ARC-Challenge`.
Splits train / dev / test (`validation` is dev's hub name and an alias).

The prompt lists the choices under their labels as given (`A`–`E`, or `1`–`5` in some NY Regents
rows); the gold answer is the label, which the `choice` grader compares.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reasoning_rl.data.base import Problem
from reasoning_rl.data.registry import (
    drop_bad_rows,
    load_hub_rows,
    read_bundled_jsonl,
    register_dataset,
    resolve_split,
    select_rows,
)
from reasoning_rl.errors import ConfigError
from reasoning_rl.prompts import build_messages, render_solution

SUBSETS = {"arc_easy": "ARC-Easy", "arc_challenge": "ARC-Challenge"}
SPLITS = {"train": "train", "dev": "dev", "validation": "dev", "val": "dev", "test": "test"}
_FILE_SPLIT = {"train": "Train", "dev": "Dev", "test": "Test"}
_HUB_SPLIT = {"train": "train", "dev": "validation", "test": "test"}
DEFAULT_INSTRUCTION = "Answer with the label of the correct choice ({labels})."


def normalize_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One shape for the original AI2 schema (`question.stem`, `question.choices[]`) and the hub's
    (`question`, `choices.text[]`/`choices.label[]`)."""
    question = row.get("question")
    if isinstance(question, Mapping):
        stem, choices = question.get("stem"), [(c.get("label"), c.get("text")) for c in question.get("choices") or []]
    else:
        hub_choices = row.get("choices") or {}
        stem, choices = question, list(zip(hub_choices.get("label") or [], hub_choices.get("text") or []))
    return {"id": row.get("id"), "stem": stem, "choices": choices, "answer": row.get("answerKey")}


def row_problem(row: Mapping[str, Any]) -> str | None:
    """What makes a normalised row unusable, or None."""
    if not isinstance(row["stem"], str) or not row["stem"].strip():
        return "empty question"
    labels = [label for label, _ in row["choices"]]
    if len(labels) < 2:
        return f"{len(labels)} choice(s)"
    if any(not isinstance(label, str) or not label.strip() for label in labels) or len(set(labels)) != len(labels):
        return f"missing or repeated labels {labels}"
    if any(not isinstance(text, str) for _, text in row["choices"]):
        return "a choice has no text"
    if row["answer"] not in labels:
        return f"answer key {row['answer']!r} is not among the labels {labels}"
    return None


def format_question(row: Mapping[str, Any], instruction: str = DEFAULT_INSTRUCTION) -> str:
    labels = [label for label, _ in row["choices"]]
    listed = ", ".join(labels[:-1]) + f" or {labels[-1]}"
    lines = [row["stem"].strip(), "", *(f"{label}. {text.strip()}" for label, text in row["choices"])]
    return "\n".join(lines) + "\n\n" + instruction.format(labels=listed)


def _load_rows(cfg: Mapping[str, Any], split: str) -> list[dict[str, Any]]:
    subset = SUBSETS[cfg["name"]]
    if cfg["source"] == "bundled":
        rows = read_bundled_jsonl("ai2_arc", f"{subset}-{_FILE_SPLIT[split]}.jsonl")
    elif cfg["source"] == "hub":
        rows = load_hub_rows(cfg.get("hub_id") or "allenai/ai2_arc", cfg.get("hub_config") or subset, _HUB_SPLIT[split])
    else:
        raise ConfigError(f"dataset.source={cfg['source']!r} is not one of ['bundled', 'hub']")
    return [normalize_row(row) for row in rows]


def load_ai2_arc(cfg: Mapping[str, Any], prompt_cfg: Mapping[str, Any]) -> list[Problem]:
    split = resolve_split(cfg["name"], cfg["split"], SPLITS)
    where = f"{cfg['name']}/{split}"
    on_bad_row = cfg.get("on_bad_row", "skip")
    # The upstream id is stable across sources and orders, so runs and subsamples can be paired.
    indexed = [(f"{where}/{row['id'] or i}", row) for i, row in enumerate(_load_rows(cfg, split))]
    indexed = drop_bad_rows(indexed, row_problem, on_bad_row=on_bad_row, where=where)
    indexed = select_rows(indexed, limit=cfg.get("limit"), sample=cfg.get("sample", "first"), seed=cfg["seed"])
    instruction = cfg.get("instruction") or DEFAULT_INSTRUCTION

    few_shot = []
    if cfg.get("few_shot", 0):
        # Shots come from train, so an eval on test never sees its own questions as examples. ARC has
        # no worked solutions: a shot's reasoning restates the right choice, which still shows the format.
        shots = drop_bad_rows(
            [(str(i), row) for i, row in enumerate(_load_rows(cfg, "train"))], row_problem,
            on_bad_row="skip", where=f"{cfg['name']}/train (few-shot)",
        )
        for _, row in shots[: cfg["few_shot"]]:
            text = dict(row["choices"])[row["answer"]]
            reasoning = f"The correct choice is {row['answer']}: {text.strip()}"
            few_shot.append((format_question(row, instruction), render_solution(reasoning, row["answer"], prompt_cfg)))

    return [
        Problem(
            id=problem_id,
            messages=build_messages(format_question(row, instruction), prompt_cfg, few_shot),
            gold=row["answer"],
            solution=None,  # no worked solutions: SFT needs algorithm.source=self
            meta={"source_id": row["id"], "question": row["stem"], "choices": dict(row["choices"])},
        )
        for problem_id, row in indexed
    ]


for _name in SUBSETS:
    register_dataset(_name, grader="choice")(load_ai2_arc)
