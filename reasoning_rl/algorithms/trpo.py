"""TRPO (Schulman et al. 2015) for language models: PPO's rollouts and advantages, a trust-region step.

Each step, on one rollout batch (see policy_gradient):

1. Critic: `value_epochs` passes of minibatch MSE to the GAE returns, with its own Adam optimizer
   (before the policy moves, so a head critic reads the hidden states the rollout recorded).
2. g = ∇_θ L(θ_old), the surrogate L(θ) = mean_t ρ_t(θ) A_t over the sampled tokens, θ = the
   trainable (LoRA) parameters.
3. x ≈ F⁻¹ g by `cg_iters` of conjugate gradient, F the Hessian of the mean token KL(π_old ‖ π_θ)
   (+ damping), reached only through Hessian-vector products on a `fisher_fraction` of the sequences.
4. Full step s = sqrt(2 max_kl / xᵀFx) · x; backtracking line search over s, s·β, s·β², …: accept
   the first step that improves L and whose measured mean KL(π_old ‖ π_new) ≤ max_kl; else revert.

hparams.learning_rate is not used: the policy's step size is max_kl. Cost: see docs/algorithms.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch.nn.attention import SDPBackend, sdpa_kernel

from reasoning_rl import parallel
from reasoning_rl.algorithms.base import register_algorithm
from reasoning_rl.algorithms.batch import Batch, response_forward
from reasoning_rl.algorithms.common import TrainContext
from reasoning_rl.algorithms.pg_ops import clip_grad_norm, entropy, masked_mean, token_logprobs
from reasoning_rl.algorithms.policy_gradient import PolicyGradientTrainer
from reasoning_rl.algorithms.rollout_config import RolloutConfig
from reasoning_rl.algorithms.schemas import TRPOKeys
from reasoning_rl.algorithms.trust_region import (
    FisherVectorProduct,
    backtracking_line_search,
    conjugate_gradient,
    flat_grad,
    max_step,
)
from reasoning_rl.errors import ConfigError


@dataclass
class TRPOConfig(RolloutConfig, TRPOKeys):
    """algorithm=trpo's keys (schemas.TRPOKeys) with the shared rollout settings."""

    def validate(self) -> None:
        super().validate()
        if not self.max_kl > 0:
            raise ConfigError(f"algorithm.max_kl (the trust region δ) must be > 0, got {self.max_kl}")
        if self.cg_iters < 1:
            raise ConfigError(f"algorithm.cg_iters must be >= 1, got {self.cg_iters}")
        if self.damping < 0:
            raise ConfigError(f"algorithm.damping must be >= 0, got {self.damping}")
        if not 0 < self.backtrack_ratio < 1:
            raise ConfigError(f"algorithm.backtrack_ratio must be in (0, 1), got {self.backtrack_ratio}")
        if self.max_backtracks < 1:
            raise ConfigError(f"algorithm.max_backtracks must be >= 1, got {self.max_backtracks}")
        if self.value_epochs < 1:
            raise ConfigError(f"algorithm.value_epochs={self.value_epochs}: the critic would never train; must be >= 1")
        if not 0 < self.fisher_fraction <= 1:
            raise ConfigError(f"algorithm.fisher_fraction must be in (0, 1], got {self.fisher_fraction}")


class TRPOTrainer(PolicyGradientTrainer):
    algorithm = "trpo"
    headline = ("trust_region_kl", "line_search_backtracks", "surrogate_improvement", "value_loss")

    def build_optimizer(self) -> torch.optim.Optimizer | None:
        # The critic's only: the policy moves by the trust-region step, not by an optimizer.
        params = self.critic.trainable
        return torch.optim.Adam(params, lr=self.config.critic_learning_rate) if params else None

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        config, params = self.config, self.policy_params
        metrics = self.fit_critic(batch, step)
        if not batch.has_signal:  # every return equal: no direction to step in (see Batch.has_signal)
            accepted = self.state.get("accepted_steps", 0)
            return {**metrics, "loss": metrics["value_loss"], "trust_region_kl": 0.0, "line_search_accepted": 0.0,
                    "line_search_accepted_fraction": accepted / step, "surrogate_improvement": 0.0}

        # 2. The surrogate's gradient at θ_old; the old distributions are kept to measure KL later.
        grad, surrogate_before, old_logp, metrics["entropy"] = self.surrogate_gradient(batch)

        # 3. Natural-gradient direction by CG on Fisher-vector products. Double backward through
        # attention needs the plain-math kernel (the fused ones have no second derivative).
        started = time.perf_counter()
        with sdpa_kernel(SDPBackend.MATH):
            fisher = FisherVectorProduct(lambda: self.fisher_kl(batch, step), params, config.damping)
            direction, residual = conjugate_gradient(fisher, grad, config.cg_iters)
        full_step = max_step(direction, grad - residual, config.max_kl)  # F x = g − r: no extra product
        del fisher  # frees the graph
        searched = time.perf_counter()

        # 4. Backtracking line search on the measured surrogate and KL.
        result = backtracking_line_search(
            lambda: self.surrogate_and_kl(batch, old_logp), params, full_step, surrogate_before,
            config.max_kl, config.backtrack_ratio, config.max_backtracks,
        )
        metrics["time/natural_gradient_s"] = searched - started
        metrics["time/line_search_s"] = time.perf_counter() - searched
        self.state["accepted_steps"] = self.state.get("accepted_steps", 0) + int(result.accepted)
        surrogate_after = surrogate_before + result.surrogate_improvement
        metrics.update({
            "policy_loss": -surrogate_after,
            "loss": -surrogate_after + metrics["value_loss"],
            "trust_region_kl": result.kl,
            "line_search_accepted": float(result.accepted),
            "line_search_accepted_fraction": self.state["accepted_steps"] / step,
            "line_search_backtracks": result.backtracks,
            "step_fraction": result.step_fraction,
            "surrogate_improvement": result.surrogate_improvement,
            "expected_improvement": float(grad @ full_step),  # first-order prediction for the full step
            "cg_residual": float(residual.norm()),
            "grad_norm": float(grad.norm()),
        })
        return metrics

    def fit_critic(self, batch: Batch, step: int) -> dict[str, float]:
        critic_params = self.critic.trainable
        if not critic_params:  # critic=none: V = 0, nothing to fit
            return {"value_loss": 0.0}
        order = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        losses = []
        for _ in range(self.config.value_epochs):
            permutation = torch.randperm(len(batch), generator=order)
            for lo in range(0, len(batch), self.config.local_minibatch):
                mb = batch.select(permutation[lo : lo + self.config.local_minibatch].to(self.device))
                values = self.critic.values(mb, mb.hidden)
                loss = 0.5 * masked_mean((values - mb.returns) ** 2, mb.response_mask)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                parallel.mean_gradients(critic_params)
                clip_grad_norm(critic_params, self.config.max_grad_norm)
                self.optimizer.step()
                losses.append(float(loss.detach()))
        return {"value_loss": sum(losses) / len(losses)}

    def surrogate_gradient(self, batch: Batch):
        """(∇L at θ_old flat, L(θ_old), per-chunk old log-distributions, mean entropy), over every
        process's sequences: L is a mean over all their tokens."""
        tokens = parallel.total(batch.action_mask.sum())
        grad = None
        surrogate, entropy_sum, old_logp = 0.0, 0.0, []
        for chunk in batch.chunks(self.config.local_minibatch):
            logits, _ = response_forward(self.policy, chunk, self.config.temperature)
            logprobs = token_logprobs(logits, chunk.response_ids)
            ratio = torch.exp(logprobs - chunk.old_logprobs)
            part = (ratio * chunk.advantages * chunk.action_mask).sum() / tokens  # this chunk's share of L
            g = flat_grad(part, self.policy_params)
            grad = g if grad is None else grad + g
            surrogate += part.detach()
            with torch.no_grad():
                old_logp.append(logits.log_softmax(-1).detach())
                entropy_sum += (entropy(logits.detach()) * chunk.action_mask).sum()
        sums = parallel.total(torch.stack([surrogate, entropy_sum]))
        return parallel.total(grad), float(sums[0]), old_logp, float(sums[1] / tokens)

    def fisher_kl(self, batch: Batch, step: int) -> torch.Tensor:
        """Mean token KL(stop_grad(π_θ) ‖ π_θ) on a seeded `fisher_fraction` of the sequences."""
        count = max(1, round(self.config.fisher_fraction * len(batch)))
        pick = torch.randperm(len(batch), generator=torch.Generator().manual_seed(self.config.seed + step))[:count]
        sub = batch.select(pick.sort().values.to(self.device))
        logits, _ = response_forward(self.policy, sub, self.config.temperature)
        logp = logits.log_softmax(-1)
        old = logp.detach()
        kl = (old.exp() * (old - logp)).sum(-1)
        return masked_mean(kl, sub.action_mask)

    @torch.no_grad()
    def surrogate_and_kl(self, batch: Batch, old_logp: list[torch.Tensor]) -> tuple[float, float]:
        """L(θ) and the mean token KL(π_old ‖ π_θ) over the whole rollout, at the current parameters."""
        sums = torch.zeros(3, dtype=torch.float64)  # Σ ratio·A, Σ KL, tokens: over every process's sequences
        for chunk, old in zip(batch.chunks(self.config.local_minibatch), old_logp, strict=True):
            logits, _ = response_forward(self.policy, chunk, self.config.temperature)
            logp = logits.log_softmax(-1)
            ratio = torch.exp(torch.gather(logp, -1, chunk.response_ids.unsqueeze(-1)).squeeze(-1) - chunk.old_logprobs)
            sums[0] += float((ratio * chunk.advantages * chunk.action_mask).sum())
            sums[1] += float(((old.exp() * (old - logp)).sum(-1) * chunk.action_mask).sum())
        sums[2] = float(batch.action_mask.sum())
        surrogate, kl, tokens = parallel.total(sums).tolist()
        return surrogate / tokens, kl / tokens


def check_config(cfg: DictConfig) -> TRPOConfig:
    return TRPOConfig.from_cfg(cfg)


def train(ctx: TrainContext) -> None:
    TRPOTrainer(ctx, ctx.settings.algorithm).train()


register_algorithm("trpo", check_config=check_config)(train)
