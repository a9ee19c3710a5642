"""Chat prompts: a system turn asking for <think>…</think> then a final answer, optional few-shot turns.

The same renderer writes reference solutions in the answer format, so few-shot examples, SFT targets
and the graders all agree on one format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reasoning_rl.errors import ConfigError

ANSWER_FORMATS = ("answer_tag", "boxed")


def format_answer(answer: str, answer_format: str) -> str:
    if answer_format == "answer_tag":
        return f"<answer>{answer}</answer>"
    if answer_format == "boxed":
        return f"The final answer is \\boxed{{{answer}}}."
    raise ConfigError(f"prompt.answer_format={answer_format!r} is not one of {list(ANSWER_FORMATS)}")


def render_solution(reasoning: str, answer: str, prompt_cfg: Mapping[str, Any]) -> str:
    """A reference solution in the format the prompt asks for (used for few-shot turns and SFT targets)."""
    answer_block = format_answer(answer, prompt_cfg["answer_format"])
    if prompt_cfg.get("think", True):
        return f"<think>\n{reasoning.strip()}\n</think>\n{answer_block}"
    return f"{reasoning.strip()}\n{answer_block}"


def fill(template: str, question: str) -> str:
    """The template with its {question} replaced; other braces stay as written (plain's \\boxed{})."""
    return template.replace("{question}", question)


def build_messages(
    question: str,
    prompt_cfg: Mapping[str, Any],
    few_shot: Sequence[tuple[str, str]] = (),
) -> list[dict[str, str]]:
    """System turn, then (question, rendered solution) few-shot pairs, then the question."""
    messages = []
    if prompt_cfg.get("system"):
        messages.append({"role": "system", "content": prompt_cfg["system"].strip()})
    template = prompt_cfg.get("user_template", "{question}")
    for shot_question, shot_solution in few_shot:
        messages.append({"role": "user", "content": fill(template, shot_question)})
        messages.append({"role": "assistant", "content": shot_solution})
    messages.append({"role": "user", "content": fill(template, question)})
    return messages


def apply_chat_template(tokenizer, messages: list[dict[str, str]]) -> str:
    """The prompt string the model sees, ending where the assistant's answer starts."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
