"""A toy training algorithm registered from tests/ (tests/test_registry.py, docs/architecture.md): one
module plus tests/conf/algorithm/toy.yaml, nothing edited in reasoning_rl/."""

from __future__ import annotations

from reasoning_rl.algorithms import register_algorithm
from reasoning_rl.errors import ConfigError

CALLS: list[tuple[str, object]] = []  # what the train job called, for the test


def check_config(cfg) -> None:
    """Called by the train job's own check, before anything loads."""
    if cfg.algorithm.steps < 1:
        raise ConfigError(f"algorithm.steps must be >= 1, got {cfg.algorithm.steps}")
    CALLS.append(("check_config", cfg))


def train(ctx) -> None:
    """Trains nothing: it records that the train job handed it the context."""
    CALLS.append(("train", ctx))


register_algorithm("toy", check_config=check_config)(train)
