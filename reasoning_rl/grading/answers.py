"""Where the final answer sits in a completion, and whether the completion kept to the asked-for format.

The model is asked for `<think>reasoning</think>` followed by the answer, either as
`<answer>...</answer>` ("answer_tag") or as `\\boxed{...}` ("boxed").
"""

from __future__ import annotations

import re

from reasoning_rl.errors import ConfigError

ANSWER_FORMATS = ("answer_tag", "boxed")

_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_LEADING_THINK = re.compile(r"\s*<think>(.*?)</think>(.*)", re.DOTALL)
_ONLY_ANSWER_BLOCK = re.compile(r"\s*<answer>(.*?)</answer>\s*", re.DOTALL)
_BOXED_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")


def check_answer_format(answer_format: str) -> None:
    if answer_format not in ANSWER_FORMATS:
        raise ConfigError(f"unknown answer_format {answer_format!r}; expected one of {', '.join(ANSWER_FORMATS)}")


def _content_text(content) -> str:
    if content is None:  # assistant turns that only call tools
        return ""
    if isinstance(content, str):
        return content
    # Multimodal-style content: a list of typed parts.
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def completion_text(completion) -> str:
    """The text of a completion that TRL passes either as a string or as a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    parts = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue  # tool results are not the model's words
        # TRL's response parsers (transformers >= 5) split the think block into its own field; put it back so
        # that format checks see what the model actually wrote.
        reasoning = message.get("reasoning_content") or message.get("thinking")
        if reasoning:
            parts.append(f"<think>{reasoning}</think>\n")
        parts.append(_content_text(message.get("content")))
    return "".join(parts)


def _boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every balanced `\\boxed{...}`; regexes cannot match nested braces.

    One pass with a stack of open braces, so thousands of unclosed `\\boxed{` cost linear time."""
    boxed_at = {match.end() - 1: match.start() for match in _BOXED_OPEN.finditer(text)}  # its "{" -> start
    spans, open_braces = [], []
    for i, char in enumerate(text):
        if char == "{":
            open_braces.append(i)
        elif char == "}" and open_braces:
            brace = open_braces.pop()
            if brace in boxed_at:
                spans.append((boxed_at[brace], i + 1, text[brace + 1 : i]))
    return sorted(spans)


def _after_last(text: str, tag: str) -> int:
    """Where the last `tag` ends (0 if there is none): a block search need not look further."""
    at = text.rfind(tag)
    return at + len(tag) if at >= 0 else 0


def extract_answer_span(text: str, answer_format: str) -> str | None:
    """Content of the last answer block; the last one wins because models often restate or correct themselves."""
    check_answer_format(answer_format)
    if answer_format == "answer_tag":
        # No block ends after the last closing tag; stopping there keeps unclosed tags from costing n^2.
        blocks = _ANSWER_BLOCK.findall(text, 0, _after_last(text, "</answer>"))
        return blocks[-1] if blocks else None
    spans = _boxed_spans(text)
    return spans[-1][2] if spans else None


def is_strict_format(text: str, answer_format: str) -> bool:
    check_answer_format(answer_format)
    if text.count("<think>") != 1 or text.count("</think>") != 1:
        return False
    match = _LEADING_THINK.fullmatch(text)
    if match is None or not match.group(1).strip():
        return False
    rest = match.group(2)
    if answer_format == "answer_tag":
        if text.count("<answer>") != 1 or text.count("</answer>") != 1:
            return False
        answer = _ONLY_ANSWER_BLOCK.fullmatch(rest)
        return answer is not None and bool(answer.group(1).strip())
    if "<answer>" in text or "</answer>" in text:
        return False
    spans = _boxed_spans(rest)
    # Counting openings too rejects a second, unbalanced \boxed{ that _boxed_spans would skip.
    return len(spans) == 1 and len(_BOXED_OPEN.findall(rest)) == 1 and bool(spans[0][2].strip())


def is_soft_format(text: str, answer_format: str) -> bool:
    check_answer_format(answer_format)
    think = _THINK_BLOCK.search(text, 0, _after_last(text, "</think>"))
    if think is None:
        return False
    span = extract_answer_span(text[think.end() :], answer_format)
    return span is not None and bool(span.strip())
