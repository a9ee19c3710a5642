"""PPO's and TRPO's shared settings: `algorithm.*` by field name, plus the batch, schedule and seed
from `hparams`, `generation` and the launch; each bad value is one ConfigError before a model loads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from omegaconf import MISSING, DictConfig, OmegaConf
from transformers import SchedulerType

from reasoning_rl import parallel
from reasoning_rl.algorithms.schemas import PolicyGradientKeys
from reasoning_rl.errors import ConfigError
from reasoning_rl.grading import check_rewards

CRITICS = ("head", "separate", "none")


# --------------------------------------------------------------------------------------------------
# Config


@dataclass
class RolloutConfig(PolicyGradientKeys):
    """Settings shared by PPO and TRPO: `algorithm.*` by field name (typed in schemas.py, valued in
    conf/algorithm/), plus a few from hparams, generation and the launch."""

    # From hparams (shared with the TRL algorithms, with GRPO's meaning) and generation:
    rollout_size: int = 8  # sequences per step: per_device_train_batch_size x gradient_accumulation_steps
    learning_rate: float = 1.0e-5
    max_steps: int = -1
    num_train_epochs: float = 1.0
    lr_scheduler_type: str = "constant"
    warmup_steps: float = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    temperature: float = 0.7  # the sampler's; log-probs are of the same tempered distribution
    seed: int = 0
    processes: int = 1  # data parallel: each rolls out and trains on its 1/processes of every batch

    @classmethod
    def from_cfg(cls, cfg: DictConfig):
        algo = OmegaConf.to_container(cfg.algorithm, resolve=True)
        hparams = OmegaConf.to_container(cfg.hparams, resolve=True)
        own = {f.name for f in dataclasses.fields(cls)} - set(_FROM_HPARAMS) - _NOT_ALGORITHM_KEYS
        unknown = sorted(set(algo) - own)
        if unknown:
            raise ConfigError(f"algorithm.{unknown[0]} is not an option of {cls.__name__} ({cfg.algorithm.name})")
        values = dict(algo)
        unset = sorted(k for k in own if values.get(k, MISSING) == MISSING)
        if unset:  # composed without conf/algorithm/_policy_gradient.yaml, e.g. a hand-written config
            raise ConfigError(f"algorithm.{unset[0]} has no value ({cfg.algorithm.name}): "
                              "conf/algorithm/_policy_gradient.yaml sets it")
        values.update({key: hparams[key] for key in _FROM_HPARAMS if key in hparams})
        # Completions per step as GRPO counts them, so one hparams group gives every algorithm the same budget.
        values["rollout_size"] = (hparams.get("per_device_train_batch_size", 8)
                                  * hparams.get("gradient_accumulation_steps", 1))
        values.update(temperature=float(cfg.generation.temperature), seed=int(cfg.seed),
                      processes=parallel.world_size())
        config = cls(**values)
        if config.minibatch_size is None:
            config.minibatch_size = config.rollout_size
        config.validate()
        return config

    @property
    def prompts_per_step(self) -> int:
        return self.rollout_size // self.num_generations

    @property
    def local_minibatch(self) -> int:
        """Sequences per forward/backward pass in each process: `minibatch_size` counts all of them."""
        return self.minibatch_size // self.processes

    def validate(self) -> None:
        """One clear ConfigError per bad value, before any model loads."""
        check_rewards(self.rewards, self.reward_weights)
        for name in ("gamma", "lam"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"algorithm.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.kl_coef < 0:
            raise ConfigError(f"algorithm.kl_coef must be >= 0 (0 disables the KL penalty), got {self.kl_coef}")
        if self.critic not in CRITICS:
            raise ConfigError(f"algorithm.critic={self.critic!r} is not one of {list(CRITICS)}")
        if self.critic != "none" and not self.critic_learning_rate > 0:
            raise ConfigError(f"algorithm.critic_learning_rate={self.critic_learning_rate}: the critic would have "
                              "no trainable parameters that move; it must be > 0")
        for name in ("num_generations", "minibatch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"algorithm.{name} must be >= 1, got {getattr(self, name)}")
        if self.rollout_size < 1 or self.rollout_size % self.num_generations:
            raise ConfigError(
                f"hparams.per_device_train_batch_size x gradient_accumulation_steps = {self.rollout_size} "
                f"sequences per step must be a positive multiple of algorithm.num_generations = {self.num_generations}"
            )
        if self.minibatch_size > self.rollout_size:
            raise ConfigError(
                f"algorithm.minibatch_size={self.minibatch_size} is larger than the rollout batch: "
                f"hparams.per_device_train_batch_size x gradient_accumulation_steps = {self.rollout_size} sequences "
                f"({self.prompts_per_step} prompts x num_generations={self.num_generations})"
            )
        for what, count in (("prompts per step", self.prompts_per_step),
                            ("algorithm.minibatch_size", self.minibatch_size)):
            if count % self.processes:  # every process must take the same number of sequences through each step
                raise ConfigError(f"{what} = {count} does not split over {self.processes} processes; make "
                                  f"hparams.per_device_train_batch_size x gradient_accumulation_steps and "
                                  f"algorithm.minibatch_size multiples of num_generations x {self.processes}")
        if not self.temperature > 0:
            raise ConfigError("generation.temperature must be > 0 for policy-gradient training "
                              "(greedy has no log-probs to ratio)")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ConfigError("set hparams.max_steps > 0 or hparams.num_train_epochs > 0")
        try:
            SchedulerType(self.lr_scheduler_type)
        except ValueError:
            raise ConfigError(
                f"hparams.lr_scheduler_type={self.lr_scheduler_type!r} is not a transformers scheduler") from None


_NOT_ALGORITHM_KEYS = {"rollout_size", "temperature", "seed", "processes"}  # set from hparams, generation, the launch

# algorithm settings that are hparams keys of the same name (shared with the TRL algorithms)
_FROM_HPARAMS = ("learning_rate", "max_steps", "num_train_epochs", "lr_scheduler_type", "warmup_steps",
                 "weight_decay", "max_grad_norm")
