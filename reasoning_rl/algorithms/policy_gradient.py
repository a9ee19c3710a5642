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

The pieces, one module each: rollout_config.py (settings), batch.py (sequences and the forward pass),
pg_ops.py (masked tensor arithmetic, GAE), critic.py (V); this module is the trainer.
"""


from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import get_scheduler

from reasoning_rl import models, parallel, warm_start
from reasoning_rl.algorithms.batch import Batch, make_batch, response_forward
from reasoning_rl.algorithms.critic import Critic
from reasoning_rl.algorithms.pg_ops import (
    explained_variance,
    generalized_advantages,
    masked_mean,
    token_logprobs,
    whiten,
)
from reasoning_rl.algorithms.rollout_config import RolloutConfig
from reasoning_rl.callbacks.checkpoint import CheckpointCallback
from reasoning_rl.checkpointing import load_newest, load_rng, load_weights, mark_complete, rotate_checkpoints, save_rng
from reasoning_rl.generation import build_backend
from reasoning_rl.grading import get_reward_funcs
from reasoning_rl.prompts import apply_chat_template

log = logging.getLogger(__name__)


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
        self.backend = build_backend(ctx.settings.generation, model=self.policy, tokenizer=self.tokenizer)
        self.reference = self._reference_model()
        self.critic = Critic(config.critic, self.policy, ctx.cfg.model, ctx.cfg.peft)
        self.total_steps = self._total_steps(len(ctx.train_problems))
        self.optimizer = self.build_optimizer()  # None: nothing trained by gradient steps (TRPO, critic=none)
        warmup = config.warmup_steps
        warmup = int(warmup * self.total_steps) if isinstance(warmup, float) and warmup < 1 else int(warmup)
        self.scheduler = (get_scheduler(config.lr_scheduler_type, self.optimizer, num_warmup_steps=warmup,
                                        num_training_steps=self.total_steps) if self.optimizer else None)
        self.state: dict[str, Any] = {"global_step": 0}  # plus whatever the subclass counts across steps

    def build_optimizer(self) -> torch.optim.Optimizer | None:
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
        orders: dict[int, list[int]] = {}  # a step's slice spans at most two epochs
        picked = []
        for i in range((step - 1) * per_step, step * per_step):
            epoch, position = divmod(i, len(problems))
            if epoch not in orders:
                orders[epoch] = list(range(len(problems)))
                random.Random(self.config.seed + epoch).shuffle(orders[epoch])
            picked.append(problems[orders[epoch][position]])
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
        config = self.config
        problems = parallel.shard(self.step_problems(step))  # this process's share of the step's prompts
        prompts = [apply_chat_template(self.tokenizer, p.messages) for p in problems]
        # Seeded by step, so a resumed run samples what an uninterrupted one would.
        sampling = self.ctx.settings.generation.params(n=config.num_generations,
                                                       seed=parallel.own_seed(config.seed + 1000 * step))
        completions = self.backend.generate(prompts, sampling, progress=False)

        # 2. Sequence-level scores: weighted sum of the registry rewards.
        flat_completions = [c for group in completions for c in group]
        texts = [c.text for c in flat_completions]
        golds = [p.gold for p in problems for _ in range(config.num_generations)]
        per_reward = {fn.__name__: torch.tensor(fn(completions=texts, gold=golds), dtype=torch.float32)
                      for fn in self.reward_funcs}
        scores = sum(w * r for w, r in zip(config.reward_weights, per_reward.values()))

        prompt_ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        batch = make_batch(
            [prompt_ids[i // config.num_generations] for i in range(len(texts))],
            [self.response_token_ids(c) for c in flat_completions],
            self.tokenizer.pad_token_id, self.device,
            injected=[getattr(c, "injected", None) or [] for c in flat_completions],
        )

        # 3. Log-probs under the rollout policy and the reference; 4. values.
        want_hidden = self.critic.reads_policy_hidden
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
        # All scores equal (e.g. every answer wrong) and no KL term: GAE's advantages are then only the critic's
        # errors, and whitening would blow them up to unit scale; a trust-region step on them moved TRPO's
        # policy by KL 0.03-0.10 on GSM8K batches with no reward at all. The critic still learns.
        batch.has_signal = has_signal(parallel.gather(scores.tolist()), config.kl_coef)
        if not batch.has_signal:
            batch.advantages = torch.zeros_like(batch.advantages)

        lengths = mask.sum(1)
        metrics = {
            "reward": float(scores.mean()),
            "no_signal": float(not batch.has_signal),  # 1: the policy was left as it was this step
            "reward_std": float(scores.std()) if len(scores) > 1 else 0.0,
            **{f"rewards/{name}/mean": float(r.mean()) for name, r in per_reward.items()},
            "completions/mean_length": float(lengths.mean()),
            "completions/clipped_ratio": sum(c.finish_reason == "length" for c in flat_completions) / len(texts),
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
        every_eval, every_save = ctx.settings.eval.every_steps, ctx.cfg.checkpoint.every_steps
        if step == 0 and ctx.settings.eval.at_start:
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
            if self.scheduler:
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
        wait forever in the next all-reduce. The answer is the all-reduced one, not the local flag: a signal
        that lands while this process waits in the all-reduce sets its flag after the others have voted."""
        stop = parallel.any_rank(self.ctx.preempted)
        if stop and not self.ctx.preempted:
            self.ctx.checkpoint_callback.preempted = True  # the train job then reports the stop here too
        return stop

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
        torch.save({"optimizer": self.optimizer.state_dict() if self.optimizer else None,
                    "scheduler": self.scheduler.state_dict() if self.scheduler else None}, folder / "optimizer.pt")
        save_rng(folder)  # rng.pt (tensors) + rng.json: nothing in a checkpoint needs unpickling
        (folder / "trainer_state.json").write_text(json.dumps({**self.state, "global_step": step}, indent=2))
        mark_complete(folder)  # fsyncs every file, then writes COMPLETE
        rotate_checkpoints(self.ctx.checkpoint_dir, self.ctx.cfg.checkpoint.keep)
        log.info("saved %s", folder)
        return step

    def resume(self, first: Path) -> int:
        """Load `first` (the newest complete checkpoint), or, if a file of it does not load, the next
        older complete one. Returns the step resumed at."""
        _, step = load_newest(self.ctx.checkpoint_dir, self.load_checkpoint, newest=first)
        return step

    def load_checkpoint(self, folder: Path) -> int:
        load_weights(self.policy, folder)
        self.critic.load_trainable_state(load_file(folder / "critic.safetensors", device=str(self.device)))
        saved = torch.load(folder / "optimizer.pt", map_location=self.device, weights_only=True)
        if self.optimizer:
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
        load_rng(folder)
        self.state = json.loads((folder / "trainer_state.json").read_text())
        log.info("resumed %s at step %d from %s", self.algorithm, self.state["global_step"], folder)
        return int(self.state["global_step"])


def has_signal(scores: list[float], kl_coef: float) -> bool:
    """Whether a step's sequence scores (of every process) can tell its actions apart: they differ, or the
    per-token KL penalty makes the returns differ."""
    return kl_coef > 0 or max(scores) > min(scores)
