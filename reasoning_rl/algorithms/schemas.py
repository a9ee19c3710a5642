"""The typed keys of algorithm=ppo and algorithm=trpo, as Hydra structured configs.

Their values, the defaults, live in one place, conf/algorithm/_policy_gradient.yaml (shared) and
ppo.yaml / trpo.yaml; here every key is MISSING and has only its type. ppo.yaml and trpo.yaml list
their schema first, so Hydra refuses a misspelt key (`algorithm.clip_rang=…`) or a value of the wrong
type (`algorithm.ppo_epochs=two`) while composing, before any job starts. The trainers' settings
(rollout_config.RolloutConfig, ppo.PPOConfig, trpo.TRPOConfig) extend these classes with what they
take from hparams, generation and the launch.

Registered in Hydra's ConfigStore on import; hydra_plugins/reasoning_rl_algorithms imports this module,
as Hydra imports every hydra_plugins module before it composes. Kept free of torch: a sweep's
submitting process composes too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class PolicyGradientKeys:
    """algorithm.* of PPO and TRPO: rollouts, rewards, the critic, GAE, the KL penalty."""

    name: str = MISSING
    rewards: List[str] = MISSING  # noqa: UP006  (OmegaConf reads typing's generics)
    reward_weights: List[float] = MISSING  # noqa: UP006
    num_generations: int = MISSING  # completions sampled per prompt
    gamma: float = MISSING  # discount per token
    lam: float = MISSING  # GAE λ: 0 = one-step TD, 1 = Monte-Carlo returns
    kl_coef: float = MISSING  # per-token penalty β·(log π_old − log π_ref); 0 skips the reference pass
    whiten_advantages: bool = MISSING
    critic: str = MISSING  # head: linear head on the policy's last hidden states | separate: own model copy + head
    critic_learning_rate: float = MISSING
    minibatch_size: Optional[int] = MISSING  # noqa: UP007  sequences per gradient step (all processes); null: all


@dataclass
class PPOKeys(PolicyGradientKeys):
    clip_range: float = MISSING  # ε of the clipped ratio
    vf_clip: Optional[float] = MISSING  # noqa: UP007  value clipping around the rollout values; null disables it
    ppo_epochs: int = MISSING  # passes over each rollout batch


@dataclass
class TRPOKeys(PolicyGradientKeys):
    max_kl: float = MISSING  # δ: the trust region, mean per-token KL(π_old ‖ π_new)
    cg_iters: int = MISSING  # conjugate-gradient iterations = Fisher-vector products per step
    damping: float = MISSING  # F + damping·I
    backtrack_ratio: float = MISSING  # β
    max_backtracks: int = MISSING  # step sizes tried: s, s·β, …, s·β^(max_backtracks−1)
    value_epochs: int = MISSING  # critic passes over each rollout batch
    fisher_fraction: float = MISSING  # share of the rollout's sequences the Fisher is estimated on


SCHEMAS = {"_ppo_keys": PPOKeys, "_trpo_keys": TRPOKeys}  # conf/algorithm/<name>, as the yaml lists them


def register() -> None:
    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        store.store(group="algorithm", name=name, node=node, provider="reasoning_rl")


register()
