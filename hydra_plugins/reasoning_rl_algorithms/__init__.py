"""Hydra imports every module under hydra_plugins/ before it composes a config: importing the schemas
here registers the typed keys of algorithm=ppo / algorithm=trpo (reasoning_rl/algorithms/schemas.py)
in every process that composes, the Compose API of the tests included."""

from reasoning_rl.algorithms import schemas  # noqa: F401  (registers on import)
