"""What PPO and TRPO share: rollouts from the LoRA policy, token-level rewards with a KL penalty to the
reference, a critic, GAE advantages, and the training loop (evals, logging, checkpoints, resume).

One training step, as in the RLHF literature (Ziegler et al. 2019, Ouyang et al. 2022):

1. Rollout: `num_generations` completions for each of the step's prompts, sampled by the generation
   backend from the current policy; each is a sequence of actions (tokens) in an episode that ends
   with the completion.
2. Score: the registry rewards of the finished completion, weighted and summed, paid at its last token.
3. Log-probabilities of the sampled tokens under the rollout ("old") policy and under the reference
   (the same model with the LoRA adapter disabled); each token pays `-kl_coef * (log π_old - log π_ref)`.
4. Values V(s_t) from the critic, then GAE(γ, λ) advantages and returns; advantages are whitened.
5. The algorithm's own update (PPO: clipped epochs over minibatches; TRPO: one trust-region step).

Sequences are laid out as [left-padded prompt | right-padded response], so every response starts at
the same column and the logits of the response positions are the last R+1 of the sequence.
Dropout stays off throughout: the importance ratios must compare one deterministic function.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import SchedulerType, get_scheduler

from reasoning_rl import models, parallel, warm_start
from reasoning_rl.algorithms.rng_state import load_rng, save_rng
from reasoning_rl.callbacks.checkpoint import (
    CheckpointCallback,
    complete_checkpoints,
    mark_complete,
    no_loadable_checkpoint,
    rotate_checkpoints,
    warn_unloadable,
)
from reasoning_rl.errors import ConfigError, UserError
from reasoning_rl.generation import build_backend, sampling_params_from_cfg
from reasoning_rl.grading import REWARDS, get_reward_funcs
from reasoning_rl.prompts import apply_chat_template

log = logging.getLogger(__name__)

CRITICS = ("head", "separate")


# --------------------------------------------------------------------------------------------------
# Config


@dataclass
class RolloutConfig:
    """Settings shared by PPO and TRPO: `algorithm.*` by field name, plus a few from hparams/generation."""

    rewards: list[str] = field(default_factory=lambda: ["correctness"])
    reward_weights: list[float] = field(default_factory=lambda: [1.0])
    num_generations: int = 4  # completions sampled per prompt
    gamma: float = 1.0  # discount per token
    lam: float = 0.95  # GAE λ: 0 = one-step TD, 1 = Monte-Carlo returns
    kl_coef: float = 0.05  # per-token penalty β·(log π_old − log π_ref); 0 skips the reference pass
    whiten_advantages: bool = True
    critic: str = "head"  # head: linear head on the policy's last hidden states | separate: own model copy + head
    critic_learning_rate: float = 1.0e-4
    minibatch_size: int | None = None  # sequences per forward/backward pass; None: the whole rollout batch
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
        unknown = sorted(set(algo) - own - {"name"})
        if unknown:
            raise ConfigError(f"algorithm.{unknown[0]} is not an option of {cls.__name__} ({cfg.algorithm.name})")
        values = {k: v for k, v in algo.items() if k != "name"}
        values.update({ours: hparams[theirs] for ours, theirs in _FROM_HPARAMS.items() if theirs in hparams})
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
        unknown = [r for r in self.rewards if r not in REWARDS]
        if unknown:
            raise ConfigError(f"algorithm.rewards: unknown reward {unknown[0]!r}; known: {sorted(REWARDS)}")
        if len(self.reward_weights) != len(self.rewards):
            raise ConfigError(f"algorithm.reward_weights has {len(self.reward_weights)} values "
                              f"for {len(self.rewards)} rewards")
        for name in ("gamma", "lam"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"algorithm.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.kl_coef < 0:
            raise ConfigError(f"algorithm.kl_coef must be >= 0 (0 disables the KL penalty), got {self.kl_coef}")
        if self.critic not in CRITICS:
            raise ConfigError(f"algorithm.critic={self.critic!r} is not one of {list(CRITICS)}")
        if not self.critic_learning_rate > 0:
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

# our field -> hparams key
_FROM_HPARAMS = {
    "learning_rate": "learning_rate",
    "max_steps": "max_steps",
    "num_train_epochs": "num_train_epochs",
    "lr_scheduler_type": "lr_scheduler_type",
    "warmup_steps": "warmup_steps",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
}


# --------------------------------------------------------------------------------------------------
# Tensor helpers (all masked over the real response tokens)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return masked_mean((x - masked_mean(x, mask)) ** 2, mask)


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit variance over the real tokens of every process's batch; padding stays 0."""
    count = parallel.total(mask.sum()).clamp(min=1)
    mean = parallel.total((x * mask).sum()) / count
    var = parallel.total(((x - mean) ** 2 * mask).sum()) / count
    return (x - mean) / torch.sqrt(var + eps) * mask


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 − Var(returns − values) / Var(returns): 1 for a perfect critic, 0 for a constant one."""
    var = masked_var(returns, mask)
    return float(1 - masked_var(returns - values, mask) / var) if var > 0 else 0.0


def generalized_advantages(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE (Schulman et al. 2016): A_t = Σ_l (γλ)^l δ_{t+l}, δ_t = r_t + γ V(s_{t+1}) − V(s_t).

    The episode ends after the last real token, so V there is 0; returns are A + V (the critic's target).
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    length = rewards.shape[1]
    for t in reversed(range(length)):
        not_done = mask[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        next_value = values[:, t + 1] * not_done if t + 1 < length else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * not_done * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.gather(logits.log_softmax(-1), -1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


# --------------------------------------------------------------------------------------------------
# Sequences and forward passes


@dataclass
class Batch:
    """Token sequences [prompt | response]; per-token tensors cover the R response positions."""

    input_ids: torch.Tensor  # (B, P + R)
    attention_mask: torch.Tensor  # (B, P + R)
    response_mask: torch.Tensor  # (B, R) float: 1 on real response tokens
    action_mask: torch.Tensor  # (B, R) float: 1 on tokens the policy sampled (not inserted by budget forcing)
    prompt_length: int  # P
    # Filled by the rollout:
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    rewards: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    hidden: torch.Tensor | None = None  # (B, R, H) policy hidden states at rollout (head critic)

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_length :]

    @property
    def position_ids(self) -> torch.Tensor:
        # As generate() numbers them under left padding, so log-probs match the sampler's.
        return (self.attention_mask.cumsum(-1) - 1).clamp(min=0)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, index) -> Batch:
        """The sequences at `index` (a slice or index tensor): a minibatch."""
        pick = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return Batch(**{k: v[index] if isinstance(v, torch.Tensor) else v for k, v in pick.items()})

    def chunks(self, size: int):
        for lo in range(0, len(self), size):
            yield self.select(slice(lo, lo + size))


def make_batch(prompt_ids: list[list[int]], response_ids: list[list[int]], pad_id: int, device,
               injected: list[list[tuple[int, int]]] | None = None) -> Batch:
    """`injected`: per response, [start, end) spans of tokens that were inserted, not sampled (budget
    forcing's wait text): part of the state, but not actions, so no policy loss or KL penalty on them."""
    prompt_length = max(map(len, prompt_ids))
    response_length = max(map(len, response_ids))
    ids, attention, response_mask, action_mask = [], [], [], []
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids, strict=True)):
        left, right = prompt_length - len(p), response_length - len(r)
        ids.append([pad_id] * left + p + r + [pad_id] * right)
        attention.append([0] * left + [1] * (len(p) + len(r)) + [0] * right)
        response_mask.append([1.0] * len(r) + [0.0] * right)
        actions = list(response_mask[-1])
        for start, end in (injected[i] if injected else []):
            actions[start:end] = [0.0] * len(actions[start:end])
        action_mask.append(actions)
    return Batch(
        input_ids=torch.tensor(ids, device=device),
        attention_mask=torch.tensor(attention, device=device),
        response_mask=torch.tensor(response_mask, device=device),
        action_mask=torch.tensor(action_mask, device=device),
        prompt_length=prompt_length,
    )


def response_forward(model, batch: Batch, temperature: float, *, hidden: bool = False, logits: bool = True):
    """(logits of the response positions / temperature, last hidden states there or None).

    Position P−1+t predicts response token t; only those R logits are computed (logits_to_keep).
    """
    response_length = batch.response_ids.shape[1]
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        logits_to_keep=response_length + 1 if logits else 1,
        output_hidden_states=hidden,
        use_cache=False,
    )
    scaled = out.logits[:, :-1].float() / temperature if logits else None
    states = None
    if hidden:
        p = batch.prompt_length
        states = out.hidden_states[-1][:, p - 1 : p + response_length - 1].float()
    return scaled, states


# --------------------------------------------------------------------------------------------------
# The critic


class Critic(nn.Module):
    """V(s_t) for every response position.

    head: a linear head reading the policy's last hidden states, detached, so only the policy
    objective moves the policy (TRPO's trust region covers the policy alone); cheap, no second model.
    separate: its own copy of the base model with its own LoRA adapter (peft=none: a fully trained
    copy), plus the linear head; stronger, at the memory and compute of a second model.
    """

    def __init__(self, kind: str, policy, model_cfg=None, peft_cfg=None):
        super().__init__()
        self.kind = kind
        self.trunk = None
        if kind == "separate":
            self.trunk = models.apply_peft(models.load_model(model_cfg), peft_cfg).eval()
        hidden_size = (self.trunk or policy).config.get_text_config().hidden_size
        self.head = nn.Linear(hidden_size, 1).to(policy.device)
        # Zero init: V = 0 before any training, and no noise in the first advantages.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def values(self, batch: Batch, policy_hidden: torch.Tensor | None) -> torch.Tensor:
        if self.trunk is None:
            hidden = policy_hidden.detach()
        else:
            _, hidden = response_forward(self.trunk, batch, 1.0, hidden=True, logits=False)
        return self.head(hidden).squeeze(-1) * batch.response_mask

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().contiguous() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.trainable_state()) - set(state)
        if missing:
            raise ConfigError(f"checkpoint lacks critic weights {sorted(missing)[0]} (critic={self.kind})")
        self.load_state_dict(state, strict=False)


# --------------------------------------------------------------------------------------------------
# The training loop


class PolicyGradientTrainer:
    """Rollout → update, with the train job's evals, logging, checkpoints and resume.

    Subclasses define `build_optimizer()` and `update(batch, step) -> metrics`.
    """

    algorithm = "policy_gradient"

    def __init__(self, ctx, config: RolloutConfig):
        self.ctx = ctx
        self.config = config
        self.policy = ctx.model.eval()  # dropout off for good: see the module docstring
        self.tokenizer = ctx.tokenizer
        self.device = self.policy.device
        if ctx.cfg.get("init_from") and config.kl_coef != 0:  # the KL pulls towards the parent, not the base
            warm_start.add_reference_adapter(self.policy)
        self.policy_params = [p for p in self.policy.parameters() if p.requires_grad]
        self.reward_funcs = get_reward_funcs(config.rewards, grader=ctx.grader,
                                             answer_format=ctx.cfg.prompt.answer_format)
        self.backend = build_backend(ctx.cfg.generation, model=self.policy, tokenizer=self.tokenizer)
        self.reference = self._reference_model()
        self.critic = Critic(config.critic, self.policy, ctx.cfg.model, ctx.cfg.peft)
        self.total_steps = self._total_steps(len(ctx.train_problems))
        self.optimizer = self.build_optimizer()
        warmup = config.warmup_steps
        warmup = int(warmup * self.total_steps) if isinstance(warmup, float) and warmup < 1 else int(warmup)
        self.scheduler = get_scheduler(config.lr_scheduler_type, self.optimizer, num_warmup_steps=warmup,
                                       num_training_steps=self.total_steps)
        self.state: dict[str, Any] = {"global_step": 0}  # plus whatever the subclass counts across steps

    def build_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        raise NotImplementedError

    def _reference_model(self):
        if self.config.kl_coef == 0:
            return None
        if hasattr(self.policy, "disable_adapter"):
            return None  # LoRA: the same model, its adapter disabled (or the warm start's frozen copy)
        log.info("peft=none: loading a frozen copy of the base model as the KL reference")
        reference = models.load_model(self.ctx.cfg.model)
        reference.requires_grad_(False)
        return reference

    def _total_steps(self, num_problems: int) -> int:
        if self.config.max_steps > 0:
            return self.config.max_steps
        return max(1, math.ceil(self.config.num_train_epochs * num_problems / self.config.prompts_per_step))

    # ---- 1-4: rollout, rewards, log-probs, values, advantages

    def step_problems(self, step: int):
        """Step s's prompts: the next slice of a seeded shuffle of the training set, reshuffled each epoch."""
        problems, per_step = self.ctx.train_problems, self.config.prompts_per_step
        picked = []
        for i in range((step - 1) * per_step, step * per_step):
            epoch, position = divmod(i, len(problems))
            order = list(range(len(problems)))
            random.Random(self.config.seed + epoch).shuffle(order)
            picked.append(problems[order[position]])
        return picked

    def response_token_ids(self, completion) -> list[int]:
        """The sampled tokens: the backend's own ids when it reports them, else the text re-tokenized
        (plus the end-of-turn token when the model stopped by itself)."""
        ids = getattr(completion, "token_ids", None)
        if ids is None:
            ids = self.tokenizer(completion.text, add_special_tokens=False)["input_ids"]
            if completion.finish_reason == "stop":
                ids = ids + [self.tokenizer.eos_token_id]
        return list(ids) or [self.tokenizer.eos_token_id]

    @torch.no_grad()
    def rollout(self, step: int) -> tuple[Batch, dict[str, float]]:
        cfg, config = self.ctx.cfg, self.config
        problems = parallel.shard(self.step_problems(step))  # this process's share of the step's prompts
        prompts = [apply_chat_template(self.tokenizer, p.messages) for p in problems]
        # Seeded by step, so a resumed run samples what an uninterrupted one would.
        sampling = sampling_params_from_cfg(cfg.generation, n=config.num_generations,
                                            seed=parallel.own_seed(config.seed + 1000 * step))
        completions = self.backend.generate(prompts, sampling, progress=False)

        # 2. Sequence-level scores: weighted sum of the registry rewards.
        texts = [c.text for group in completions for c in group]
        golds = [p.gold for p in problems for _ in range(config.num_generations)]
        per_reward = {fn.__name__: torch.tensor(fn(completions=texts, gold=golds), dtype=torch.float32)
                      for fn in self.reward_funcs}
        scores = sum(w * r for w, r in zip(config.reward_weights, per_reward.values()))

        prompt_ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        flat_completions = [c for group in completions for c in group]
        batch = make_batch(
            [prompt_ids[i // config.num_generations] for i in range(len(texts))],
            [self.response_token_ids(c) for c in flat_completions],
            self.tokenizer.pad_token_id, self.device,
            injected=[getattr(c, "injected", None) or [] for c in flat_completions],
        )

        # 3. Log-probs under the rollout policy and the reference; 4. values.
        want_hidden = self.critic.kind == "head"
        old, ref, values, hidden = [], [], [], []
        for chunk in batch.chunks(config.local_minibatch):
            logits, states = response_forward(self.policy, chunk, config.temperature, hidden=want_hidden)
            old.append(token_logprobs(logits, chunk.response_ids) * chunk.response_mask)
            values.append(self.critic.values(chunk, states))
            hidden.append(states)
            if config.kl_coef > 0:
                ref.append(self.reference_logprobs(chunk) * chunk.response_mask)
        batch.old_logprobs, batch.values = torch.cat(old), torch.cat(values)
        batch.hidden = torch.cat(hidden) if want_hidden else None
        mask, actions = batch.response_mask, batch.action_mask

        # Token rewards: −β·KL estimate on every sampled token, the score on the last token.
        kl = (batch.old_logprobs - torch.cat(ref)) * actions if ref else torch.zeros_like(mask)
        rewards = -config.kl_coef * kl
        last = mask.sum(1).long() - 1
        rewards[torch.arange(len(batch)), last] += scores.to(self.device)
        batch.rewards = rewards * mask

        advantages, batch.returns = generalized_advantages(batch.rewards, batch.values, mask, config.gamma, config.lam)
        batch.advantages = (whiten(advantages, actions) if config.whiten_advantages else advantages) * actions

        lengths = mask.sum(1)
        metrics = {
            "reward": float(scores.mean()),
            "reward_std": float(scores.std()) if len(scores) > 1 else 0.0,
            **{f"rewards/{name}/mean": float(r.mean()) for name, r in per_reward.items()},
            "completions/mean_length": float(lengths.mean()),
            "completions/clipped_ratio": sum(c.finish_reason == "length" for g in completions for c in g) / len(texts),
            "kl": float(masked_mean(kl, actions)),  # to the reference, per sampled token
            "value_mean": float(masked_mean(batch.values, mask)),
            "explained_variance": explained_variance(batch.values, batch.returns, mask),
        }
        return batch, metrics

    def reference_logprobs(self, chunk: Batch) -> torch.Tensor:
        if self.reference is not None:
            logits, _ = response_forward(self.reference, chunk, self.config.temperature)
        else:
            from trl.trainer.utils import use_adapter

            reference = (warm_start.REFERENCE_ADAPTER if warm_start.REFERENCE_ADAPTER in self.policy.peft_config
                         else None)
            with use_adapter(self.policy, reference):  # None: adapters disabled, i.e. the base model
                logits, _ = response_forward(self.policy, chunk, self.config.temperature)
        return token_logprobs(logits, chunk.response_ids)

    # ---- the loop

    def train(self) -> None:
        ctx = self.ctx
        if ctx.checkpoint_callback is None:
            ctx.checkpoint_callback = CheckpointCallback()  # installs the SIGTERM/SIGUSR2 handler
        step = saved = self.resume(ctx.resume_from) if ctx.resume_from else 0
        every_eval, every_save = ctx.cfg.eval.every_steps, ctx.cfg.checkpoint.every_steps
        if step == 0 and ctx.cfg.eval.at_start:
            ctx.run_eval(self.policy, 0)
        bar = tqdm(total=self.total_steps, initial=step, desc=self.algorithm, unit="step", disable=not ctx.run_dir.main)
        while step < self.total_steps and not self.stopping():  # a signal ends the loop after the current step
            step += 1
            started = time.perf_counter()
            batch, metrics = self.rollout(step)
            rolled_out = time.perf_counter()
            metrics.update(self.update(batch, step))
            metrics = parallel.mean_values(metrics)  # what is logged: the mean over processes
            metrics.update({"time/rollout_s": rolled_out - started, "time/update_s": time.perf_counter() - rolled_out})
            metrics["learning_rate"] = self.scheduler.get_last_lr()[0]
            self.scheduler.step()
            self.state["global_step"] = step
            ctx.tracker.log({f"train/{k}": float(v) for k, v in metrics.items()}, step=step)
            bar.set_postfix(reward=f"{metrics['reward']:.3f}", refresh=False)
            bar.update(1)
            log.info("%s step %d/%d: reward %.3f, %s", self.algorithm, step, self.total_steps, metrics["reward"],
                     ", ".join(f"{k}={metrics[k]:.4g}" for k in self.headline if k in metrics))
            stopping = self.stopping()
            if step % every_save == 0 or stopping:
                saved = self.save_checkpoint(step)
            if every_eval and step % every_eval == 0 and not stopping:  # a preempted job has seconds, not minutes
                ctx.run_eval(self.policy, step)
        bar.close()
        if self.stopping():
            if saved != step:  # the signal came during the eval that followed an unsaved step
                self.save_checkpoint(step)
            return
        if self.total_steps not in ctx.eval_results:
            ctx.run_eval(self.policy, self.total_steps)

    headline: tuple[str, ...] = ()

    def stopping(self) -> bool:
        """Preempted in any process: then all are, and stop at the same step; one that went on alone would
        wait forever in the next all-reduce."""
        if parallel.any_rank(self.ctx.preempted) and not self.ctx.preempted:
            self.ctx.checkpoint_callback.preempted = True  # the train job then reports the stop here too
        return self.ctx.preempted

    # ---- checkpoints: adapter, critic, optimizer, scheduler, RNG, step; COMPLETE written last

    def save_checkpoint(self, step: int) -> int:
        folder = self.ctx.checkpoint_dir / f"checkpoint-{step}"
        if not self.ctx.run_dir.main:
            return step
        if folder.exists():  # an incomplete leftover of a crash
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        models.save_adapter(self.policy, folder)  # adapter_model.safetensors + adapter_config.json
        save_file(self.critic.trainable_state(), folder / "critic.safetensors")
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                   folder / "optimizer.pt")
        save_rng(folder)  # rng.pt (tensors) + rng.json: nothing in a checkpoint needs unpickling
        (folder / "trainer_state.json").write_text(json.dumps({**self.state, "global_step": step}, indent=2))
        mark_complete(folder)  # fsyncs every file, then writes COMPLETE
        rotate_checkpoints(self.ctx.checkpoint_dir, self.ctx.cfg.checkpoint.keep)
        log.info("saved %s", folder)
        return step

    def resume(self, first: Path) -> int:
        """Load `first` (the newest complete checkpoint), or, if a file of it does not load, the next
        older complete one; each that fails is named in a warning. Returns the step resumed at."""
        candidates = [first, *[p for p in complete_checkpoints(self.ctx.checkpoint_dir) if p != first
                               and int(p.name.split("-")[1]) < int(first.name.split("-")[1])]]
        for folder in candidates:
            try:
                return self.load_checkpoint(folder)
            except UserError:  # a checkpoint of another setup (critic kind, adapter): not damage
                raise
            except Exception as exc:  # noqa: BLE001  (safetensors, torch, json: each its own errors)
                warn_unloadable(folder, f"{type(exc).__name__}: {str(exc)[:200]}")
        raise no_loadable_checkpoint(self.ctx.checkpoint_dir, first)

    def load_checkpoint(self, folder: Path) -> int:
        from reasoning_rl.algorithms.orpo import load_weights

        load_weights(self.policy, folder)
        self.critic.load_trainable_state(load_file(folder / "critic.safetensors", device=str(self.device)))
        saved = torch.load(folder / "optimizer.pt", map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        load_rng(folder)
        self.state = json.loads((folder / "trainer_state.json").read_text())
        log.info("resumed %s at step %d from %s", self.algorithm, self.state["global_step"], folder)
        return int(self.state["global_step"])


def clip_grad_norm(params, max_norm: float) -> float:
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm and max_norm > 0 else float("inf")))
