"""GRPO rollouts through our own backend, via TRL GRPOTrainer's `rollout_func` hook: for budget forcing,
and on request (`algorithm.rollouts=ours`) for our HF backend's speed (shared prefill, LoRA merged on CPU).

TRL calls `rollout(prompts, trainer)` with this process's slice of the batch (each prompt already
repeated `num_generations` times) and wants one completion per entry: its prompt ids, completion
ids and sampling logprobs (None: TRL then treats the rollout as on-policy and computes them itself).
`env_mask` marks which completion tokens the model sampled (1) and which were inserted (0: the wait
text, a forced close); TRL leaves the 0s out of the loss, so the policy is not trained on them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reasoning_rl.generation.base import SamplingParams
from reasoning_rl.generation.budget_forcing import BudgetForcedBackend, BudgetForcing
from reasoning_rl.generation.hf import HFBackend

_STEP_SEED_STRIDE = 7919  # rollouts of step s draw from seed + s * stride (+ the process index)


def injected_mask(length: int, injected: list[tuple[int, int]]) -> list[int]:
    mask = [1] * length
    for start, end in injected:
        mask[start:end] = [0] * (end - start)
    return mask


def backend_rollout(forcing: BudgetForcing | None, *, seed: int, batch_size: int,
                    decode: str = "dynamic") -> Callable[[list, Any], dict]:
    def rollout(prompts: list, trainer) -> dict:
        args, tokenizer = trainer.args, trainer.processing_class
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        # The policy as it is now (LoRA adapter included); unwrap DDP's wrapper for plain forward calls.
        model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
        backend = HFBackend(model, tokenizer, decode=decode)  # a static decoder is kept per model, across steps
        backend = BudgetForcedBackend(backend, forcing) if forcing else backend
        # TRL scores these tokens with its own temperature, so sample with exactly its settings.
        params = SamplingParams(
            n=1,
            max_new_tokens=args.max_completion_length,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k or 0,
            # A function of the step: a resumed run draws the same rollouts as an uninterrupted one.
            seed=seed + trainer.state.global_step * _STEP_SEED_STRIDE + trainer.accelerator.process_index,
            batch_size=batch_size,
        )
        prompt_ids = backend.encode(texts)
        completions = [per_prompt[0] for per_prompt in backend.generate_ids(prompt_ids, params, progress=False)]
        metrics = getattr(trainer, "_metrics", {}).get("train")  # TRL's per-step log (a private dict of lists)
        if metrics is not None and forcing:
            for name in ("extensions_mean", "thinking_tokens_mean"):
                metrics[f"budget_forcing/{name}"].append(backend.last_stats[name])
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": [c.token_ids for c in completions],
            "logprobs": None,
            "env_mask": [injected_mask(len(c.token_ids), c.injected or []) for c in completions],
        }

    return rollout
