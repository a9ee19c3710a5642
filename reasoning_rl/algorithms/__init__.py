"""Training algorithms. Each module has `check_config(cfg)` (fails before anything loads) and
`train(ctx)`; sft/orpo/grpo wrap TRL trainers, ppo/trpo are our own (TRL 1.x has neither)."""

from __future__ import annotations

import importlib
from types import ModuleType

from reasoning_rl.errors import ConfigError

ALGORITHMS = ("sft", "orpo", "grpo", "ppo", "trpo")


def get_algorithm(name: str) -> ModuleType:
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {name!r}; known: {list(ALGORITHMS)}")
    return importlib.import_module(f"reasoning_rl.algorithms.{name}")
