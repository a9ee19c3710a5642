"""Training algorithms: sft/orpo/grpo wrap TRL trainers, ppo/trpo are our own (TRL 1.x has neither).

Each algorithm module ends with its registration (the contract is in base.py):
`register_algorithm(name, check_config=..., backends=...)(train)`. The registry finds the modules of
this package itself, so there is no import list to edit.
"""

from __future__ import annotations

from reasoning_rl.algorithms.base import ALGORITHMS, Algorithm, configured, get_algorithm, register_algorithm

__all__ = ["ALGORITHMS", "Algorithm", "configured", "get_algorithm", "register_algorithm"]
