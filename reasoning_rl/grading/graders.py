"""Graders turn a completion into a canonical answer (for majority voting) and judge it against the gold answer."""

from __future__ import annotations

import json
import re
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

import sympy
from math_verify import parse, verify

from reasoning_rl.data.grids import canonical_grid, parse_grid
from reasoning_rl.errors import ConfigError
from reasoning_rl.grading import bounded
from reasoning_rl.grading.answers import ANSWER_FORMATS, check_answer_format, completion_text, extract_answer_span

GRADERS: dict[str, type] = {}

# A number may carry a sign only where it cannot be a subtraction ("9-3" is 9 and 3), commas count only as
# thousands separators ("1,080"), so lists such as "3,4" stay two numbers, and an exponent belongs to its
# number ("1e3" is 1000, not 1).
_NUMBER = re.compile(r"(?<![\w.])(?:-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|-?\.\d+)(?:[eE][-+]?\d+(?!\w|\.\d))?")
# "1,2,3" or "3, 4": a list of numbers states no single answer (math-verify would read 1,2 as 1.2).
_NUMBER_LIST = re.compile(r"\s*-?[\d.]+(?:\s*,\s*-?[\d.]+)+\s*")
_LIST_COMMA = re.compile(r"\d,(?!\d{3}(?!\d))\s*\d|\d\s+,\s*\d|\d,\s+\d")
# What flexible extraction may take as "the last number": fractions count as one number, not two.
_NUMBER_TOKEN = re.compile(r"-?\\frac\s*\{[^{}]*\}\s*\{[^{}]*\}|-?\\frac\d\d|" + _NUMBER.pattern + r"(?:\s*/\s*\d+)?")
_PLAIN_FRACTION = re.compile(r"\s*(-?\d+)\s*/\s*(\d+)\s*")
_GSM8K_MARK = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS = re.compile(r"\banswer\s*(?:is|:)\s*:?([^\n]*)", re.IGNORECASE)
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
_LATEX_NOISE = (r"\left", r"\right", r"\!", r"\,", r"\;", r"\ ", r"\$", r"\%", "$", "%", r"^\circ", r"^{\circ}")
# sympy sees answer-sized strings only; a longer answer is not parsed (math-verify's cost grows with it).
_MAX_PARSE_CHARS = 200
# Powers, factorials, binomials, Gamma and series can have sympy compute a number with billions of digits
# (9^{9^{9^9}}, ((9^{999})^{999})^{999}) inside one C call: only powers with small literal exponents whose
# product (the exponent of a nested power) stays small, and at most one sum or product, reach it. The
# wall-clock bound of `bounded` catches what the screen misses; the screen keeps it rare.
_POWER = re.compile(r"\^|\*\*")
_SMALL_POWER = re.compile(r"(?:\^|\*\*)\s*(?:\{\s*(-?\d{1,3})\s*\}|(-?\d{1,3})(?![\d.]))")
_MAX_EXPONENT_PRODUCT = 1000
_HUGE_OPERATION = re.compile(r"!|\\[dt]?binom|\\choose|(?i:gamma)|factorial")
_SERIES = re.compile(r"\\(?:sum|prod)(?![a-zA-Z])")
# No answer has more digits than this; Python also refuses to print integers of over 4300 digits.
_MAX_DIGITS = 100
# Exact comparison, with room for answers the model rounded to six places ("0.333333" for 1/3).
_TOLERANCE = Fraction(1, 10**6)


@runtime_checkable
class Grader(Protocol):
    name: str

    def extract(self, completion: str) -> str | None: ...

    def is_correct(self, extracted: str | None, gold: str) -> bool: ...


def registrar(table: dict, kind: str):
    """A `@register(name)` decorator that adds to `table` and refuses a name twice."""

    def register(name: str):
        def decorator(obj):
            if name in table:
                raise ValueError(f"{kind} {name!r} is already registered")
            table[name] = obj
            return obj

        return decorator

    return register


register_grader = registrar(GRADERS, "grader")


class UnknownNameError(ConfigError, KeyError):
    """A registry miss: callers may catch KeyError, while a job reports it in one line like any config error."""

    __str__ = Exception.__str__  # KeyError's would quote the message


def get_grader(name: str, **kwargs) -> Grader:
    if name not in GRADERS:
        raise UnknownNameError(f"unknown grader {name!r}; known graders: {', '.join(sorted(GRADERS))}")
    return GRADERS[name](**kwargs)


def _clean(text: str) -> str:
    """Strip the LaTeX, currency and percent dressing around a number, keeping words (they hold no digits)."""
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\u2212", "-")
    text = text.replace("{,}", ",")  # LaTeX's thousands separator: 1{,}080
    text = _LATEX_WRAPPER.sub(r" \1 ", text)
    for noise in _LATEX_NOISE:
        text = text.replace(noise, "")
    return text


def _bounded(value: Fraction) -> Fraction | None:
    limit = 10**_MAX_DIGITS
    return value if abs(value.numerator) < limit and value.denominator < limit else None


def _number_token(token: str) -> Fraction | None:
    """The value of one number as written ("1,080", "-2.5"); None for a run of digits no answer has."""
    mantissa, _, exponent = token.replace(",", "").lower().partition("e")
    if sum(char.isdigit() for char in mantissa) > _MAX_DIGITS or abs(int(exponent or 0)) > _MAX_DIGITS:
        return None  # 1e999999999 would be a billion-digit integer
    return _bounded(Fraction(Decimal(mantissa)) * Fraction(10) ** int(exponent or 0))


def _safe_for_sympy(text: str) -> bool:
    if _HUGE_OPERATION.search(text) or len(_SERIES.findall(text)) > 1:
        return False
    exponents = _SMALL_POWER.findall(text)
    if len(_POWER.findall(text)) != len(exponents):
        return False
    product = 1
    for braced, bare in exponents:
        product *= max(1, abs(int(braced or bare)))
    return product <= _MAX_EXPONENT_PRODUCT


def _sympy_value_unbounded(text: str) -> list[int] | None:
    """[numerator, denominator] of what math-verify reads in text; runs in the `bounded` child, after
    _sympy_value screened text. math-verify's signal-based timeouts are off: they fail off the main thread."""
    for candidate in (f"${text}$", text):
        for parsed in parse(candidate[:_MAX_PARSE_CHARS], parsing_timeout=None):
            if not isinstance(parsed, sympy.Basic):
                continue
            try:
                value = parsed.doit()  # math-verify keeps sums unevaluated: 2 + 3
                if value.is_Rational:
                    fraction = _bounded(Fraction(int(value.p), int(value.q)))
                elif value.is_number and value.is_real:
                    fraction = _bounded(Fraction(Decimal(str(value.evalf(20))).quantize(Decimal("1e-10"))))
                else:
                    continue
                return None if fraction is None else [fraction.numerator, fraction.denominator]
            except (TypeError, ValueError, ArithmeticError, AttributeError):
                continue
    return None


def _verify_unbounded(gold: str, extracted: str) -> bool:
    return bool(verify(parse(gold, parsing_timeout=None), parse(extracted, parsing_timeout=None), timeout_seconds=None))


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


def _sympy_value(text: str) -> Fraction | None:
    """The value math-verify reads, within bounded.SECONDS; BoundExceeded past that."""
    if not all(_safe_for_sympy(c[:_MAX_PARSE_CHARS]) for c in (f"${text}$", text)):
        return None  # screened here too: no round trip to the child for what it would refuse
    value = bounded.call("value", text)
    return None if value is None else Fraction(*value)


def number_value(text: str) -> Fraction | None:
    """The exact value of the number that `text` states, or None when it states none."""
    text = _clean(extract_answer_span(text, "boxed") or text)
    fraction = _PLAIN_FRACTION.fullmatch(text)
    if fraction:
        numerator, denominator = _number_token(fraction.group(1)), _number_token(fraction.group(2))
        return numerator / denominator if numerator is not None and denominator else None
    numbers = _NUMBER.findall(text)
    if len(numbers) == 1 and "\\" not in text:
        return _number_token(numbers[0])
    if _NUMBER_LIST.fullmatch(text):
        return None
    if _LIST_COMMA.search(text):  # "x = 1,2,3": math-verify would read a decimal comma; the last number it is
        return _number_token(numbers[-1])
    if not any(char.isdigit() for char in text):
        return None
    # An expression ("\frac{1}{2}", "9 * 2 = 18", "\sqrt{2}"): let math-verify read it, else take the last number.
    value = _sympy_value(text)
    if value is None and numbers:
        value = _number_token(numbers[-1])
    return value


def canonical_number(value: Fraction) -> str:
    """Equal values give equal strings: "18", "-3", "2.5"; fractions with no finite decimal stay "1/3"."""
    if value.denominator == 1:
        return str(value.numerator)
    rest = value.denominator
    for prime in (2, 5):
        while rest % prime == 0:
            rest //= prime
    if rest != 1:
        return f"{value.numerator}/{value.denominator}"
    with localcontext() as context:
        context.prec = 100
        return format((Decimal(value.numerator) / Decimal(value.denominator)).normalize(), "f")


@register_grader("numeric")
@register_grader("gsm8k")
class NumericGrader:
    """Grades answers that are a single number, as in GSM8K."""

    name = "gsm8k"

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
            tokens = _NUMBER_TOKEN.findall(_clean(text))
            value = number_value(tokens[-1]) if tokens else None
            if value is not None:
                return canonical_number(value)
        return None

    def is_correct(self, extracted: str | None, gold: str) -> bool:
        if extracted is None:
            return False
        try:
            predicted, expected = number_value(extracted), number_value(gold)
            if predicted is None or expected is None:
                # Not a number after all: leave it to math-verify, bounded like _sympy_value.
                if len(extracted) > _MAX_PARSE_CHARS or not _safe_for_sympy(extracted):
                    return False
                return bool(bounded.call("verify", gold, extracted))
        except bounded.BoundExceeded:
            self.timeouts += 1
            return False
        return abs(predicted - expected) <= _TOLERANCE


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

    name = "choice"

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

    name = "grid"

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

    name = "reasoning_gym"

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
                return self._canonical(span.strip())
        if self.fallback == "last_number":
            tokens = _NUMBER_TOKEN.findall(_clean(text))
            return self._canonical(tokens[-1]) if tokens else None
        return None

    @staticmethod
    def _canonical(span: str) -> str:
        """Plain numbers in one spelling ("7", "7.0", "+7" → "7") so that maj@K counts them as one answer;
        anything else as written."""
        if _NUMBER.fullmatch(span.lstrip("+")):
            value = _number_token(span.lstrip("+"))
            if value is not None:
                return canonical_number(value)
        return span

    def score(self, extracted: str | None, gold: str) -> float:
        if extracted is None:
            return 0.0
        try:
            score = bounded.call("task_score", self.task, self.task_config, extracted[:_MAX_PARSE_CHARS * 5], gold)
        except bounded.BoundExceeded:  # scores 0, and evaluation reports the count
            self.timeouts += 1
            return 0.0
        return 0.0 if score is None else float(score)  # None: the verifier raised

    def is_correct(self, extracted: str | None, gold: str) -> bool:
        return self.score(extracted, gold) >= 1.0
