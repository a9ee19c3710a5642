"""Reward functions in a registry, open-r1 style: small pure functions, bound to TRL's signature on request."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reasoning_rl.data.grids import cell_accuracy, parse_grid
from reasoning_rl.errors import ConfigError
from reasoning_rl.grading.answers import completion_text, is_soft_format, is_strict_format
from reasoning_rl.grading.graders import Grader, GridGrader
from reasoning_rl.registry import Registry

# `fn(completions, **kwargs) -> list[float]`; a new module in reasoning_rl/grading/ that registers one is
# found without an import list.
REWARDS: Registry[Callable] = Registry("reward", package="reasoning_rl.grading")
register_reward = REWARDS.register


@register_reward("correctness")
def correctness(completions, gold, grader: Grader, **kwargs) -> list[float]:
    return [
        float(grader.is_correct(grader.extract(completion_text(c)), g)) for c, g in zip(completions, gold, strict=True)
    ]


@register_reward("task_score")
def task_score(completions, gold, grader: Grader, **kwargs) -> list[float]:
    """The grader's partial credit in [0, 1] where it gives one (reasoning-gym's `score_answer`), else
    correctness."""
    score = getattr(grader, "score", None)
    if score is None:
        return correctness(completions, gold, grader)
    return [float(score(grader.extract(completion_text(c)), g)) for c, g in zip(completions, gold, strict=True)]


@register_reward("format_strict")
def format_strict(completions, answer_format: str = "answer_tag", **kwargs) -> list[float]:
    return [float(is_strict_format(completion_text(c), answer_format)) for c in completions]


@register_reward("format_soft")
def format_soft(completions, answer_format: str = "answer_tag", **kwargs) -> list[float]:
    return [float(is_soft_format(completion_text(c), answer_format)) for c in completions]


@register_reward("parsable_answer")
def parsable_answer(completions, grader: Grader, **kwargs) -> list[float]:
    """1 when the grader can read a final answer at all: a shaping reward for models too weak to be
    right yet, which gives GRPO groups some variance to learn from."""
    return [float(grader.extract(completion_text(c)) is not None) for c in completions]


@register_reward("grid_cells")
def grid_cells(completions, gold, grader: Grader, **kwargs) -> list[float]:
    """Partial credit for ARC-AGI: the fraction of cells right, 0 when no grid is read or its shape is
    wrong. Denser than exact match for RL; the eval metrics still count whole grids only."""
    if not isinstance(grader, GridGrader):
        raise ConfigError(f"reward grid_cells needs a grid data set (arc_agi1, arc_agi2), not grader {grader.name!r}")
    return [
        cell_accuracy(parse_grid(grader.extract(completion_text(c))), parse_grid(g))
        for c, g in zip(completions, gold, strict=True)
    ]


def _bind(name: str, fn: Callable, grader: Grader, answer_format: str) -> Callable:
    def reward(prompts=None, completions=None, completion_ids=None, **kwargs) -> list[float]:
        # Bound values win over same-named dataset columns, which TRL also passes as kwargs.
        kwargs.update(grader=grader, answer_format=answer_format)
        return fn(completions, **kwargs)

    # TRL logs each reward under its function's __name__.
    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = fn.__doc__
    return reward


def check_rewards(names: Sequence[str], weights: Sequence[float]) -> None:
    """`algorithm.rewards` / `reward_weights` (the `reward` group's names and weights), before anything loads."""
    unknown = [name for name in names if name not in REWARDS]
    if unknown:
        raise ConfigError(f"algorithm.rewards: {REWARDS.unknown(*unknown)}")
    if len(weights) != len(names):
        raise ConfigError(f"algorithm.reward_weights has {len(weights)} values for {len(names)} rewards")
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
        raise ConfigError(f"algorithm.reward_weights must be numbers, got {list(weights)}")


def get_reward_funcs(names: Sequence[str], *, grader: Grader, answer_format: str) -> list[Callable]:
    return [_bind(name, REWARDS[name], grader, answer_format) for name in names]
