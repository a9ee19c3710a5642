"""A job's typed settings, built from the composed config in one step and checked before anything loads:
generation (sampling, budget forcing, backend), evaluation, and the algorithm's own (what its
`check_config` returns). The job passes them down; no layer below re-reads them from `cfg`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reasoning_rl.evaluation import EvalSettings, check_generation_config
from reasoning_rl.generation.settings import GenerationSettings


@dataclass(frozen=True)
class JobSettings:
    generation: GenerationSettings
    eval: EvalSettings
    algorithm: Any = None  # the train job's: e.g. PPOConfig; None for an algorithm that keeps none

    @classmethod
    def from_cfg(cls, cfg: Any) -> JobSettings:
        """generation and eval; the train job adds the algorithm's (dataclasses.replace)."""
        evaluation = EvalSettings.from_cfg(cfg.eval)
        generation = GenerationSettings.from_cfg(cfg.generation)
        check_generation_config(cfg.generation, cfg.eval)  # a warning, not an error
        return cls(generation=generation, eval=evaluation)
