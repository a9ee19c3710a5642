"""GRPO (Shao et al. 2024) through TRL's GRPOTrainer, with rewards from the registry.

For each prompt, `num_generations` completions are sampled and scored by the configured rewards;
each completion's advantage is its reward relative to its group, and the policy takes a clipped
step with a KL penalty (`beta`) to the reference model (the base model: LoRA adapter disabled).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import Dataset
from omegaconf import DictConfig, OmegaConf
from trl import GRPOConfig, GRPOTrainer

from reasoning_rl.algorithms.base import register_algorithm
from reasoning_rl.algorithms.common import TrainContext, problem_rows, trainer_kwargs
from reasoning_rl.errors import ConfigError
from reasoning_rl.generation import GenerationBackend, GenerationSettings, budget_forcing_from_cfg, with_budget_forcing
from reasoning_rl.generation.rollout import backend_rollout
from reasoning_rl.generation.vllm import VLLMBackend
from reasoning_rl.grading import check_rewards, get_reward_funcs

log = logging.getLogger(__name__)

# Our name (shared with PPO and TRPO) -> TRL's, which algorithm.args also accepts (the old spelling).
SHARED_NAMES = {"num_generations": "num_generations", "kl_coef": "beta"}
_warned: set[str] = set()
ROLLOUTS = ("auto", "trl", "ours")  # algorithm.rollouts: see samples_with_our_backend


def apply_shared_names(algo: DictConfig) -> None:
    """algorithm.num_generations / algorithm.kl_coef reach TRL through conf/algorithm/grpo.yaml's
    `args.num_generations: ${..num_generations}`; an args value of its own is the old spelling: it still
    wins (TRL reads it), with a warning, and the shared name is set to agree."""
    args = algo.get("args") or {}
    for ours, trl in SHARED_NAMES.items():
        if trl not in args or args.get(trl) is None:
            continue
        if ours not in algo:
            continue  # a config of its own without our names: args alone, as before
        if OmegaConf.is_interpolation(args, trl) or args[trl] == algo[ours]:
            continue
        if ours not in _warned:
            _warned.add(ours)
            log.warning("algorithm.args.%s=%s is the old spelling of algorithm.%s (shared with PPO and TRPO); "
                        "it overrides algorithm.%s=%s. Write algorithm.%s=%s instead.",
                        trl, args[trl], ours, ours, algo[ours], ours, args[trl])
        algo[ours] = args[trl]



def samples_with_our_backend(rollouts: str, generation: GenerationSettings, device_type: str) -> bool:
    """Whether GRPO's rollouts go through our HF backend (TRL's `rollout_func`) instead of TRL's generate.

    `auto` takes ours where it was measured faster: on CPU, where a prompt's N samples share one prefill
    and LoRA is merged while sampling (bench/grpo_overhead: 0.74x bare TRL's step at 64 new tokens, 0.82x at
    the learn size's 12).
    On a GPU it keeps TRL's generate, which our eager decode has not been shown to beat (docs/generation.md),
    and with generation=vllm TRL's engine. Budget forcing needs ours: TRL's generate can't suppress a </think>.
    """
    if generation.budget_forcing:
        return True
    if rollouts == "auto":
        return generation.backend == "hf" and device_type == "cpu"
    return rollouts == "ours"


def check_config(cfg: DictConfig) -> None:
    algo = cfg.algorithm
    apply_shared_names(algo)
    if algo.args.get("num_generations", 8) < 2:
        raise ConfigError(f"algorithm.num_generations must be >= 2 (got {algo.args.get('num_generations')}): "
                          "GRPO's advantages compare completions of one prompt")
    check_rewards(list(algo.rewards), list(algo.reward_weights))
    if algo.get("rollouts", "auto") not in ROLLOUTS:
        raise ConfigError(f"algorithm.rollouts={algo.rollouts!r} is not one of {list(ROLLOUTS)}")
    if algo.get("rollouts", "auto") == "ours" and cfg.generation.backend == "vllm":
        raise ConfigError("algorithm.rollouts=ours samples with our HF backend; with generation=vllm use rollouts=trl")
    forcing = budget_forcing_from_cfg(cfg.generation, max_new_tokens=algo.args.get("max_completion_length"))
    if forcing and cfg.generation.backend == "vllm":
        raise ConfigError("generation.budget_forcing with generation=vllm is not supported for GRPO; use generation=hf")
    if cfg.generation.backend == "vllm":
        from reasoning_rl.generation.vllm import check_available

        check_available()  # one clear line on a machine without vLLM or a GPU, before anything loads
    trainer_kwargs(GRPOConfig, cfg, Path(tempfile.gettempdir()))  # unknown or invalid args fail now, not after loading
    batch = cfg.hparams.per_device_train_batch_size * cfg.hparams.gradient_accumulation_steps
    if batch % algo.args.get("num_generations", 8):
        raise ConfigError(
            f"hparams.per_device_train_batch_size x gradient_accumulation_steps = {batch} must be a multiple "
            f"of algorithm.num_generations = {algo.args.num_generations}"
        )


def train(ctx: TrainContext) -> None:
    cfg = ctx.cfg
    reward_funcs = get_reward_funcs(list(cfg.algorithm.rewards), grader=ctx.grader,
                                    answer_format=cfg.prompt.answer_format)
    args = trainer_kwargs(
        GRPOConfig, cfg, ctx.checkpoint_dir,
        reward_weights=list(cfg.algorithm.reward_weights),
        **_vllm_args(cfg.generation),
    )
    generation = ctx.settings.generation  # budget forcing checked by check_config against max_completion_length
    ours = samples_with_our_backend(cfg.algorithm.get("rollouts", "auto"), generation, ctx.model.device.type)
    log.info("GRPO rollouts: %s", "our HF backend (rollout_func)" if ours
             else "TRL's vLLM engine" if generation.backend == "vllm" else "TRL's generate")
    with warnings.catch_warnings():
        # TRL marks rollout_func experimental on every run; it is our CPU default, checked against the pinned
        # TRL by the tests, and docs/generation.md says so once instead of every run's log.
        warnings.filterwarnings("ignore", message="You are using 'rollout_func'", category=UserWarning)
        trainer = GRPOTrainer(
            rollout_func=(backend_rollout(generation.budget_forcing, seed=cfg.seed,
                                          batch_size=generation.sampling.batch_size, decode=generation.decode)
                          if ours else None),
            model=ctx.model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=Dataset.from_list(problem_rows(ctx.train_problems)),
            processing_class=ctx.tokenizer,
            callbacks=ctx.callbacks(),
        )
    if generation.backend == "vllm":
        ctx.eval_backend = trl_engine_eval(trainer, generation)
    trainer.train(resume_from_checkpoint=str(ctx.resume_from) if ctx.resume_from else None)


def trl_engine_eval(trainer: GRPOTrainer, generation: GenerationSettings) -> Callable[[Any], GenerationBackend] | None:
    """The in-training evaluation's sampler for generation=vllm: TRL's colocated engine, which holds the
    weights being trained (a second engine would need its own GPU memory and a copy of every update). None
    where that engine can't serve it: TrainContext.run_eval then samples the live model with the HF backend."""
    engine = getattr(trainer, "vllm_generation", None)
    if engine is None or engine.mode != "colocate":  # server mode: the engine is in another process
        return None
    # TRL wakes and re-sleeps a sleeping engine inside its own generate(); repeating that here would couple
    # us to its internals. A tensor-parallel engine needs the same prompts from each of its processes, where
    # the evaluation gives every process its own share of the problems.
    reason = None
    if engine.enable_sleep_mode:
        reason = "algorithm.args.vllm_enable_sleep_mode is on (TRL's engine sleeps between its rollouts)"
    elif engine.tensor_parallel_size > 1:
        reason = "algorithm.args.vllm_tensor_parallel_size > 1 (each process evaluates its own problems)"
    if reason:
        log.warning("the in-training evaluation samples with the HF backend, not TRL's vLLM engine: %s", reason)
        return None

    def backend(model) -> GenerationBackend:
        # TRL's own bookkeeping (GRPOTrainer._generate_single_turn): the weights are pushed once per step,
        # so its next rollout at this step doesn't push them again.
        if trainer.state.global_step != trainer._last_loaded_step:
            engine.sync_weights()  # merges a LoRA adapter, pushes the weights, resets the prefix cache
            trainer._last_loaded_step = trainer.state.global_step
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        # check_config refuses budget forcing with vllm for GRPO; the wrapping keeps build_backend's rule.
        return with_budget_forcing(VLLMBackend.from_engine(engine.llm, generation_eos=eos), generation)

    return backend


def _vllm_args(gen_cfg: DictConfig) -> dict:
    """generation=vllm: TRL samples the rollouts with vLLM inside the training process (colocate)."""
    if gen_cfg.backend != "vllm":
        return {}
    return {"use_vllm": True, "vllm_mode": "colocate",
            "vllm_gpu_memory_utilization": float(gen_cfg.get("gpu_memory_utilization") or 0.3)}


register_algorithm("grpo", check_config=check_config, backends=("hf", "vllm"))(train)  # vllm: TRL's colocate mode
