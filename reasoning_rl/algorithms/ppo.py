"""PPO (Schulman et al. 2017) for language models, token level, as in the RLHF literature and verl.

Each step: a rollout batch (see policy_gradient: samples, rewards at the end of each completion, a
per-token KL penalty to the reference, critic values, GAE advantages), then `ppo_epochs` passes over
shuffled minibatches of it, each minimising

    policy:  mean_t max(−A_t·ρ_t, −A_t·clip(ρ_t, 1−ε, 1+ε)),   ρ_t = π_θ(a_t|s_t) / π_old(a_t|s_t)
    value:   mean_t ½ max((V_t − R_t)², (V_old,t + clip(V_t − V_old,t, ±vf_clip) − R_t)²)

over the sampled response tokens of the minibatch (the value loss: all response tokens), with
gradient-norm clipping. Our own trainer: TRL 1.x
no longer ships one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from reasoning_rl import parallel
from reasoning_rl.algorithms.base import register_algorithm
from reasoning_rl.algorithms.batch import Batch, response_forward
from reasoning_rl.algorithms.common import TrainContext
from reasoning_rl.algorithms.pg_ops import clip_grad_norm, entropy, masked_mean, token_logprobs
from reasoning_rl.algorithms.policy_gradient import PolicyGradientTrainer
from reasoning_rl.algorithms.rollout_config import RolloutConfig
from reasoning_rl.algorithms.schemas import PPOKeys
from reasoning_rl.errors import ConfigError


@dataclass
class PPOConfig(RolloutConfig, PPOKeys):
    """algorithm=ppo's keys (schemas.PPOKeys) with the shared rollout settings."""

    def validate(self) -> None:
        super().validate()
        if not self.clip_range > 0:
            raise ConfigError(f"algorithm.clip_range must be > 0, got {self.clip_range}")
        if self.vf_clip is not None and not self.vf_clip > 0:
            raise ConfigError(f"algorithm.vf_clip must be > 0 or null (no value clipping), got {self.vf_clip}")
        if self.ppo_epochs < 1:
            raise ConfigError(f"algorithm.ppo_epochs must be >= 1, got {self.ppo_epochs}")


def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, clip_range: float):
    """The clipped surrogate (as a loss), and the share of tokens whose ratio left [1−ε, 1+ε].

    Outside the range, in the direction the advantage pushes, the clipped term is the max and is
    constant in θ: those tokens give no gradient, which is what keeps the step near π_old.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean(((ratio - 1).abs() > clip_range).float(), mask)
    return loss, clip_fraction


def clipped_value_loss(values, old_values, returns, mask, vf_clip: float | None):
    if vf_clip is None:
        return 0.5 * masked_mean((values - returns) ** 2, mask), torch.zeros(())
    clipped_values = old_values + torch.clamp(values - old_values, -vf_clip, vf_clip)
    losses = torch.maximum((values - returns) ** 2, (clipped_values - returns) ** 2)
    clip_fraction = masked_mean(((values - old_values).abs() > vf_clip).float(), mask)
    return 0.5 * masked_mean(losses, mask), clip_fraction


class PPOTrainer(PolicyGradientTrainer):
    algorithm = "ppo"
    headline = ("policy_loss", "value_loss", "kl", "approx_kl", "clip_fraction")

    def build_optimizer(self) -> torch.optim.Optimizer:
        # The critic shares no parameters with the policy (see Critic), so one loss policy + value
        # with a learning rate per group is the same as two separate updates.
        return torch.optim.AdamW([
            {"params": self.policy_params, "lr": self.config.learning_rate, "weight_decay": self.config.weight_decay},
            {"params": self.critic.trainable, "lr": self.config.critic_learning_rate, "weight_decay": 0.0},
        ])

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        config = self.config
        critic_params = self.critic.trainable
        if not batch.has_signal and not critic_params:  # nothing to learn from this batch: no critic to fit
            return {"policy_loss": 0.0, "value_loss": 0.0, "loss": 0.0, "approx_kl": 0.0, "clip_fraction": 0.0}
        order = torch.Generator().manual_seed(config.seed * 1_000_003 + step)  # same shuffles after a resume
        sums: dict[str, float] = {}
        updates = 0
        for _ in range(config.ppo_epochs):
            permutation = torch.randperm(len(batch), generator=order)
            for lo in range(0, len(batch), config.local_minibatch):
                mb = batch.select(permutation[lo : lo + config.local_minibatch].to(self.device))
                logits, hidden = response_forward(self.policy, mb, config.temperature,
                                                  hidden=self.critic.reads_policy_hidden)
                logprobs = token_logprobs(logits, mb.response_ids)
                policy_loss, clip_fraction = clipped_policy_loss(
                    logprobs, mb.old_logprobs, mb.advantages, mb.action_mask, config.clip_range)
                values = self.critic.values(mb, hidden)
                value_loss, value_clip_fraction = clipped_value_loss(
                    values, mb.values, mb.returns, mb.response_mask, config.vf_clip)

                self.optimizer.zero_grad(set_to_none=True)
                # No signal (Batch.has_signal): the critic's loss alone, so the policy has no gradient at all
                # and AdamW leaves it as it is (a zero gradient would still move it by its momentum).
                (policy_loss + value_loss if batch.has_signal else value_loss).backward()
                parallel.mean_gradients([*self.policy_params, *critic_params])  # data parallel: one step for all
                grad_norm = clip_grad_norm(self.policy_params, config.max_grad_norm)
                clip_grad_norm(critic_params, config.max_grad_norm)
                self.optimizer.step()

                with torch.no_grad():
                    log_ratio = logprobs.detach() - mb.old_logprobs
                    stats = {
                        "policy_loss": policy_loss.detach(),
                        "value_loss": value_loss.detach(),
                        "loss": (policy_loss + value_loss).detach(),
                        "clip_fraction": clip_fraction,
                        "value_clip_fraction": value_clip_fraction,
                        # KL(π_old ‖ π_θ) per token, the low-variance k3 estimator (Schulman 2020).
                        "approx_kl": masked_mean(torch.exp(log_ratio) - 1 - log_ratio, mb.action_mask),
                        "entropy": masked_mean(entropy(logits.detach()), mb.action_mask),
                        "grad_norm": grad_norm,
                    }
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                updates += 1
        return {k: v / updates for k, v in sums.items()}


def check_config(cfg: DictConfig) -> PPOConfig:
    return PPOConfig.from_cfg(cfg)


def train(ctx: TrainContext) -> None:
    PPOTrainer(ctx, ctx.settings.algorithm).train()


register_algorithm("ppo", check_config=check_config)(train)
