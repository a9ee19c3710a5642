"""The algorithm contract: what the train job needs of a training algorithm, and the registry it is found in.

An algorithm is one module that ends with its registration:

    register_algorithm("ppo", check_config=check_config)(train)

- `train(ctx)` trains `ctx.model` (a TrainContext: config, data, model, grader, evaluation, callbacks);
- `check_config(cfg)` raises ConfigError for anything wrong with the composed config, before a model
  loads (the train job calls it from its own check); what it returns (e.g. PPO's typed PPOConfig, or None)
  is `ctx.settings.algorithm` in `train`, so the settings are built once;
- `backends` are the generation backends (generation=...) it can sample with; the train job refuses the
  others before anything loads.

Modules in reasoning_rl/algorithms/ are found by the registry (no import list); an algorithm defined
elsewhere names its module in its yaml (`module: my_package.my_algorithm`, see `configured`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reasoning_rl.registry import Registry

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from reasoning_rl.algorithms.common import TrainContext


@dataclass(frozen=True)
class Algorithm:
    name: str
    train: Callable[[TrainContext], None]
    check_config: Callable[[DictConfig], Any]  # returns the algorithm's typed settings, or None
    backends: tuple[str, ...] = ("hf",)  # generation backends it samples with


def _algorithm(name: str, train, *, check_config, backends: tuple[str, ...] = ("hf",)) -> Algorithm:
    return Algorithm(name=name, train=train, check_config=check_config, backends=tuple(backends))


ALGORITHMS: Registry[Algorithm] = Registry("algorithm", package="reasoning_rl.algorithms", entry=_algorithm)
register_algorithm = ALGORITHMS.register


def get_algorithm(name: str, *, module: str | None = None) -> Algorithm:
    return ALGORITHMS.get(name, module=module)


def configured(cfg: Any) -> Algorithm:
    """The algorithm `cfg.algorithm` names: `name`, after importing `module` where the yaml gives one
    (an algorithm outside reasoning_rl/algorithms/, e.g. tests/conf/algorithm/toy.yaml)."""
    return get_algorithm(cfg.algorithm.name, module=cfg.algorithm.get("module"))
