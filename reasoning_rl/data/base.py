"""The dataset interface: every data set yields Problems and names the grader that scores them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One evaluation or training item.

    `messages` is the chat prompt (system/user turns, few-shot included) ready for a chat template;
    `gold` is the reference final answer as a string (e.g. "18" for GSM8K); `solution` is the
    worked reference solution when the data set has one (used by SFT).
    """

    id: str
    messages: list[dict[str, str]]
    gold: str
    solution: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
