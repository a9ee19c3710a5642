"""The number an answer states: read exactly ("1,080", "-2.5", "\\frac{1}{2}", "1e3"), compared within a
tolerance, and written one way for majority voting. What math-verify and sympy read runs in the `bounded`
child, after a screen that keeps answer-sized inputs from computing huge numbers."""

from __future__ import annotations

import re
from decimal import Decimal, localcontext
from fractions import Fraction

import sympy
from math_verify import parse, verify

from reasoning_rl.grading import bounded
from reasoning_rl.grading.answers import extract_answer_span

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
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
_LATEX_NOISE = (r"\left", r"\right", r"\!", r"\,", r"\;", r"\ ", r"\$", r"\%", "$", "%", r"^\circ", r"^{\circ}")
# sympy sees answer-sized strings only; a longer answer is not parsed (math-verify's cost grows with it).
MAX_PARSE_CHARS = 200
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
        for parsed in parse(candidate[:MAX_PARSE_CHARS], parsing_timeout=None):
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


def _sympy_value(text: str) -> Fraction | None:
    """The value math-verify reads, within bounded.SECONDS; BoundExceeded past that."""
    if not all(_safe_for_sympy(c[:MAX_PARSE_CHARS]) for c in (f"${text}$", text)):
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


def last_number(text: str) -> str | None:
    """The last number written anywhere in `text` (lm-eval's flexible-extract), a fraction counting as one."""
    tokens = _NUMBER_TOKEN.findall(_clean(text))
    return tokens[-1] if tokens else None


def plain_number(span: str) -> str:
    """A plain number in one spelling ("7", "7.0", "+7" -> "7"), so that maj@K counts them as one answer;
    anything else as written."""
    if _NUMBER.fullmatch(span.lstrip("+")):
        value = _number_token(span.lstrip("+"))
        if value is not None:
            return canonical_number(value)
    return span


def same_number(extracted: str, gold: str) -> bool:
    """Whether an extracted answer states the gold number (within _TOLERANCE); what is not a number after
    all is left to math-verify, bounded like _sympy_value. BoundExceeded past bounded.SECONDS."""
    predicted, expected = number_value(extracted), number_value(gold)
    if predicted is None or expected is None:
        if len(extracted) > MAX_PARSE_CHARS or not _safe_for_sympy(extracted):
            return False
        return bool(bounded.call("verify", gold, extracted))
    return abs(predicted - expected) <= _TOLERANCE
