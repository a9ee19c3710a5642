"""`generation.*` as one typed object: built and checked once by the job, before anything loads, then
handed to every place that samples (evaluations, rollouts, self-samples) instead of each re-reading the
config."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from reasoning_rl.errors import ConfigError
from reasoning_rl.generation.base import DECODES, SamplingParams
from reasoning_rl.generation.budget_forcing import BudgetForcing, budget_forcing_from_cfg


@dataclass(frozen=True)
class GenerationSettings:
    backend: str = "hf"
    decode: str = "dynamic"  # the HF backend's decode loop: one of base.DECODES
    sampling: SamplingParams = field(default_factory=SamplingParams)  # n and seed are set per use: `params`
    budget_forcing: BudgetForcing | None = None  # None: off
    options: Mapping[str, Any] = field(default_factory=dict)  # the whole block, for a backend's own keys

    @classmethod
    def from_cfg(cls, gen_cfg: Any) -> GenerationSettings:
        """One ConfigError for the first bad value of the block."""
        from reasoning_rl.generation import sampling_params_from_cfg

        if isinstance(gen_cfg, GenerationSettings):
            return gen_cfg
        block = (OmegaConf.to_container(gen_cfg, resolve=True) if isinstance(gen_cfg, DictConfig)
                 else dict(gen_cfg or {}))
        decode = block.get("decode") or "dynamic"
        if decode not in DECODES:
            raise ConfigError(f"generation.decode={decode!r} is not one of {list(DECODES)}")
        return cls(backend=block.get("backend") or "hf", decode=decode,
                   sampling=sampling_params_from_cfg(block, n=1, seed=0),
                   budget_forcing=budget_forcing_from_cfg(block), options=block)

    def params(self, *, n: int, seed: int) -> SamplingParams:
        """The sampling settings of one call: `n` completions per prompt, seeded."""
        return dataclasses.replace(self.sampling, n=n, seed=seed)
