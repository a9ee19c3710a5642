"""Sampling completions from the policy: HF (anywhere) or vLLM (CUDA GPUs), optionally budget-forced."""

from __future__ import annotations

from typing import Any

from reasoning_rl.errors import ConfigError
from reasoning_rl.generation.base import Completion, GenerationBackend, SamplingParams
from reasoning_rl.generation.budget_forcing import BudgetForcedBackend, BudgetForcing, budget_forcing_from_cfg

__all__ = [
    "BudgetForcedBackend", "BudgetForcing", "Completion", "GenerationBackend", "SamplingParams",
    "budget_forcing_from_cfg", "build_backend", "sampling_params_from_cfg",
]

BACKENDS = ("hf", "vllm")
# Keys of the generation config that are handed to vllm.LLM(...) when set.
VLLM_ENGINE_KEYS = (
    "gpu_memory_utilization",
    "max_model_len",
    "tensor_parallel_size",
    "dtype",
    "enforce_eager",
    "max_num_seqs",
    "enable_prefix_caching",
    "trust_remote_code",
    "seed",
)


def build_backend(gen_cfg: Any, model=None, tokenizer=None, model_path: str | None = None) -> GenerationBackend:
    """The configured backend, wrapped in budget forcing when `generation.budget_forcing.enabled`.

    With generation=vllm and a live `model` but no `model_path` (the in-training evaluation of a
    GRPO run whose rollouts TRL's own vLLM engine makes), the HF backend samples that model: a
    second engine would not see the weights being trained.
    """
    backend = gen_cfg.get("backend", "hf")
    forcing = budget_forcing_from_cfg(gen_cfg)
    if backend == "vllm" and model is not None and model_path is None:
        backend = "hf"
    if backend == "hf":
        if model is None or tokenizer is None:
            raise ValueError("the hf backend needs a loaded model and tokenizer")
        from reasoning_rl.generation.hf import HFBackend

        sampler = HFBackend(model, tokenizer)
    elif backend == "vllm":
        if model_path is None:
            raise ValueError("the vllm backend needs model_path")
        from reasoning_rl.generation.vllm import VLLMBackend

        engine = {k: gen_cfg.get(k) for k in VLLM_ENGINE_KEYS if gen_cfg.get(k) is not None}
        sampler = VLLMBackend(model_path, **engine)
    else:
        raise ConfigError(f"unknown generation.backend {backend!r}; known: {', '.join(BACKENDS)}")
    return BudgetForcedBackend(sampler, forcing) if forcing else sampler


def sampling_params_from_cfg(gen_cfg: Any, *, n: int, seed: int) -> SamplingParams:
    defaults = SamplingParams()

    def get(key: str):
        value = gen_cfg.get(key)
        return getattr(defaults, key) if value is None else value

    try:
        params = SamplingParams(
            n=n,
            max_new_tokens=int(get("max_new_tokens")),
            temperature=float(get("temperature")),
            top_p=float(get("top_p")),
            top_k=int(get("top_k")),
            seed=seed,
            batch_size=int(get("batch_size")),
            stop_strings=[str(s) for s in get("stop_strings")],
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"generation settings: {exc}") from None
    # Checked here, before any weights load: generate() would refuse these only mid-run.
    for key, ok, rule in (("max_new_tokens", params.max_new_tokens >= 1, ">= 1"),
                          ("temperature", params.temperature >= 0, ">= 0 (0 = greedy)"),
                          ("top_p", 0 < params.top_p <= 1, "in (0, 1]"),
                          ("top_k", params.top_k >= 0, ">= 0 (0 = off)"),
                          ("batch_size", params.batch_size >= 1, ">= 1")):
        if not ok:
            raise ConfigError(f"generation.{key} must be {rule}, got {getattr(params, key)}")
    return params
