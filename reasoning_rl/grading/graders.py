"""Graders turn a completion into a canonical answer (for majority voting) and judge it against the gold answer.

A grader is a class registered by name (`@register_grader("choice")`); `get_grader(name, **options)`
builds one and gives it that name. The numbers the numeric graders read are grading/numbers.py's.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol, runtime_checkable

from reasoning_rl.data.grids import canonical_grid, parse_grid
from reasoning_rl.errors import ConfigError, UnknownNameError
from reasoning_rl.grading import bounded
from reasoning_rl.grading.answers import ANSWER_FORMATS, check_answer_format, completion_text, extract_answer_span
from reasoning_rl.grading.numbers import (
    MAX_PARSE_CHARS,
    _sympy_value_unbounded,
    _verify_unbounded,
    canonical_number,
    last_number,
    number_value,
    plain_number,
    same_number,
)
from reasoning_rl.registry import Registry

__all__ = ["GRADERS", "ChoiceGrader", "Grader", "GridGrader", "NumericGrader", "ReasoningGymGrader",
           "UnknownNameError", "choice_label", "get_grader", "number_value", "register_grader"]

_GSM8K_MARK = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS = re.compile(r"\banswer\s*(?:is|:)\s*:?([^\n]*)", re.IGNORECASE)


@runtime_checkable
class Grader(Protocol):
    name: str  # the name it was built by (get_grader sets it)

    def extract(self, completion: str) -> str | None: ...

    def is_correct(self, extracted: str | None, gold: str) -> bool: ...


# A new module in reasoning_rl/grading/ that registers a grader is found without an import list.
GRADERS: Registry[type] = Registry("grader", package="reasoning_rl.grading")
register_grader = GRADERS.register


def get_grader(name: str, **kwargs) -> Grader:
    grader = GRADERS.get(name)(**kwargs)
    grader.name = name  # one place names a grader: its registration
    return grader


_TASKS: dict[str, Any] = {}  # in the `bounded` child: reasoning-gym tasks, built once each


def _task_score_unbounded(task: str, task_config: dict, answer: str, gold: str) -> float:
    """A reasoning-gym task's own score_answer, in the `bounded` child: task verifiers parse with sympy too."""
    from reasoning_rl.data.reasoning_gym import create

    key = json.dumps([task, task_config], sort_keys=True)
    if key not in _TASKS:
        _TASKS[key] = create(task, task_config, seed=0, size=4)
    return float(_TASKS[key].score_answer(answer, {"answer": gold}))


# What the `bounded` child may run, by name.
UNBOUNDED = {"value": _sympy_value_unbounded, "verify": _verify_unbounded, "task_score": _task_score_unbounded}


@register_grader("numeric")
@register_grader("gsm8k")
class NumericGrader:
    """Grades answers that are a single number, as in GSM8K."""

    def __init__(self, answer_format: str = "answer_tag", fallback: str = "last_number"):
        check_answer_format(answer_format)
        if fallback not in ("last_number", "none"):
            raise ConfigError(f"unknown grader fallback {fallback!r}; expected last_number or none")
        self.answer_format = answer_format
        self.fallback = fallback
        self.timeouts = 0  # answers whose parse ran past bounded.SECONDS (scored 0)

    def _spans(self, text: str):
        """Candidate answer spans, most trusted first."""
        yield extract_answer_span(text, self.answer_format)
        for other in ANSWER_FORMATS:
            if other != self.answer_format:
                yield extract_answer_span(text, other)
        for pattern in (_GSM8K_MARK, _ANSWER_IS):
            matches = pattern.findall(text)
            yield matches[-1] if matches else None

    def extract(self, completion) -> str | None:
        try:
            return self._extract(completion)
        except bounded.BoundExceeded:  # no answer: it scores 0, and evaluation reports the count
            self.timeouts += 1
            return None

    def _extract(self, completion) -> str | None:
        text = completion_text(completion)
        for span in self._spans(text):
            value = number_value(span) if span is not None else None
            if value is not None:
                return canonical_number(value)
        if self.fallback == "last_number":
            # lm-eval's flexible-extract: small models rarely follow the format, and correctness should be
            # measurable apart from format (the format rewards score that).
            token = last_number(text)
            value = number_value(token) if token is not None else None
            if value is not None:
                return canonical_number(value)
        return None

    def is_correct(self, extracted: str | None, gold: str) -> bool:
        if extracted is None:
            return False
        try:
            return same_number(extracted, gold)
        except bounded.BoundExceeded:
            self.timeouts += 1
            return False


# A label opening the answer: "B", "(B)", "B.", "B) text", "2:". A bare capital before a space
# ("A plant") is choice text, not a label.
_LEADING_LABEL = re.compile(r"\(([A-J1-9])\)|([A-J1-9])(?=[.):,\n]|$)")
_LONE_LOWERCASE_LABEL = re.compile(r"\(?([a-j])\)?\.?")
_NAMED_LABEL = re.compile(
    r"(?i:answer|option|choice)\s*(?:(?i:is|would be|should be|must be)\s*)?:?\s*\(?([A-J1-9])\)?(?![\w])"
)
_PARENTHESIZED_LABEL = re.compile(r"\(([A-J])\)")
_BARE_LABEL = re.compile(r"\(?([A-Ja-j1-9])\)?[.):]?")
_MARKUP = re.compile(r"[*_`$]")


def choice_label(span: str | None) -> str | None:
    """The choice label an answer span gives, or None."""
    if span is None:
        return None
    text = _MARKUP.sub("", span).strip()
    lone = _LONE_LOWERCASE_LABEL.fullmatch(text)
    if lone:
        return lone.group(1).upper()
    leading = _LEADING_LABEL.match(text)
    if leading:
        return leading.group(1) or leading.group(2)
    named = _NAMED_LABEL.findall(text)
    return named[-1] if named else None


@register_grader("choice")
class ChoiceGrader:
    """Grades multiple-choice answers (AI2 ARC) by their label: "B", "(B)", "B.", "B) text", "the answer is
    B", or a number label "2". The extracted label is what maj@K votes on.

    Answers given as the choice text alone are not read: a grader sees the completion and the gold label,
    not the problem's choices."""

    def __init__(self, answer_format: str = "answer_tag", fallback: str = "marked_label"):
        check_answer_format(answer_format)
        if fallback not in ("marked_label", "none"):
            raise ConfigError(f"unknown grader fallback {fallback!r}; expected marked_label or none")
        self.answer_format = answer_format
        self.fallback = fallback

    def extract(self, completion) -> str | None:
        text = completion_text(completion)
        formats = [self.answer_format, *(f for f in ANSWER_FORMATS if f != self.answer_format)]
        for answer_format in formats:
            label = choice_label(extract_answer_span(text, answer_format))
            if label is not None:
                return label
        if self.fallback == "marked_label":
            # Small models rarely keep the format; read a label they marked unmistakably, the last one.
            bare = _BARE_LABEL.fullmatch(_MARKUP.sub("", text).strip())
            if bare:
                return bare.group(1).upper()
            for pattern in (_NAMED_LABEL, _PARENTHESIZED_LABEL):
                matches = pattern.findall(text)
                if matches:
                    return matches[-1]
        return None

    def is_correct(self, extracted: str | None, gold: str) -> bool:
        return extracted is not None and extracted.strip().upper() == gold.strip().upper()


@register_grader("grid")
class GridGrader:
    """Grades ARC-AGI answers: the whole grid must match, shape included. The extracted answer is the
    grid's canonical string (rows of digits), so maj@K votes on grids whatever separators were written."""

    def __init__(self, answer_format: str = "answer_tag", fallback: str = "last_grid"):
        check_answer_format(answer_format)
        if fallback not in ("last_grid", "none"):
            raise ConfigError(f"unknown grader fallback {fallback!r}; expected last_grid or none")
        self.answer_format = answer_format
        self.fallback = fallback

    def extract(self, completion) -> str | None:
        text = completion_text(completion)
        spans = [extract_answer_span(text, self.answer_format),
                 *(extract_answer_span(text, f) for f in ANSWER_FORMATS if f != self.answer_format)]
        if self.fallback == "last_grid":
            spans.append(text)  # the last grid written anywhere in the completion
        for span in spans:
            grid = parse_grid(span)
            if grid is not None:
                return canonical_grid(grid)
        return None

    def is_correct(self, extracted: str | None, gold: str) -> bool:
        predicted = parse_grid(extracted)
        return predicted is not None and predicted == parse_grid(gold)


@register_grader("reasoning_gym")
class ReasoningGymGrader:
    """Grades a reasoning-gym task with the task's own verifier, `score_answer`, which gives partial
    credit in [0, 1] (`score`); an answer is correct at full credit.

    The grader sees the gold answer, not the whole generated entry, so it scores against
    {"answer": gold}. Tasks whose verifier needs more of the entry (its metadata) are refused when the
    grader is built: it compares the two on a few generated entries, for the right answer and a wrong one.
    """

    def __init__(self, answer_format: str = "answer_tag", fallback: str = "last_number", task: str | None = None,
                 task_config: dict | None = None):
        from reasoning_rl.data.reasoning_gym import create

        check_answer_format(answer_format)
        if fallback not in ("last_number", "none"):
            raise ConfigError(f"unknown grader fallback {fallback!r}; expected last_number or none")
        if task is None:
            raise ConfigError("the reasoning_gym grader needs the task (dataset=reasoning_gym dataset.task=…)")
        self.answer_format, self.fallback, self.task = answer_format, fallback, task
        self._task = create(task, task_config or {}, seed=0, size=4)
        for entry in self._task:
            for answer in (str(entry["answer"]), f"{entry['answer']}0 x"):
                try:
                    alone = self._task.score_answer(answer, {"answer": str(entry["answer"])})
                except Exception:  # noqa: BLE001 - any failure means the verifier reads more than the answer
                    alone = None
                if alone != self._task.score_answer(answer, entry):
                    raise ConfigError(f"reasoning-gym task {task!r} scores answers with its entries' metadata; "
                                      "the reasoning_gym grader supports tasks scored from the answer alone")
        self.task_config = dict(task_config or {})
        self.timeouts = 0  # answers whose score ran past bounded.SECONDS (scored 0)
        bounded.warm("task_score", task, self.task_config, "0", "0")  # import and build the task in the child

    def extract(self, completion) -> str | None:
        text = completion_text(completion)
        for answer_format in (self.answer_format, *(f for f in ANSWER_FORMATS if f != self.answer_format)):
            span = extract_answer_span(text, answer_format)
            if span is not None and span.strip():
                return plain_number(span.strip())
        if self.fallback == "last_number":
            token = last_number(text)
            return plain_number(token) if token is not None else None
        return None

    def score(self, extracted: str | None, gold: str) -> float:
        if extracted is None:
            return 0.0
        try:
            score = bounded.call("task_score", self.task, self.task_config, extracted[:MAX_PARSE_CHARS * 5], gold)
        except bounded.BoundExceeded:  # scores 0, and evaluation reports the count
            self.timeouts += 1
            return 0.0
        return 0.0 if score is None else float(score)  # None: the verifier raised

    def is_correct(self, extracted: str | None, gold: str) -> bool:
        return self.score(extracted, gold) >= 1.0
