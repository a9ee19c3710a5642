"""Answer extraction, graders and reward functions (registries: GRADERS, REWARDS)."""

from reasoning_rl.grading.answers import (
    ANSWER_FORMATS,
    completion_text,
    extract_answer_span,
    is_soft_format,
    is_strict_format,
)
from reasoning_rl.grading.graders import (
    GRADERS,
    ChoiceGrader,
    Grader,
    GridGrader,
    NumericGrader,
    UnknownNameError,
    get_grader,
    register_grader,
)
from reasoning_rl.grading.rewards import (
    REWARDS,
    check_rewards,
    correctness,
    format_soft,
    format_strict,
    get_reward_funcs,
    register_reward,
)

__all__ = [
    "ANSWER_FORMATS",
    "GRADERS",
    "REWARDS",
    "check_rewards",
    "ChoiceGrader",
    "Grader",
    "GridGrader",
    "NumericGrader",
    "UnknownNameError",
    "completion_text",
    "correctness",
    "extract_answer_span",
    "format_soft",
    "format_strict",
    "get_grader",
    "get_reward_funcs",
    "is_soft_format",
    "is_strict_format",
    "register_grader",
    "register_reward",
]
