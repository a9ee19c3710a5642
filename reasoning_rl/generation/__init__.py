"""Sampling completions from the policy: HF (anywhere) or vLLM (CUDA GPUs), optionally budget-forced."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reasoning_rl.errors import ConfigError
from reasoning_rl.generation.base import Completion, GenerationBackend, SamplingParams
from reasoning_rl.generation.budget_forcing import BudgetForcedBackend, BudgetForcing, budget_forcing_from_cfg
from reasoning_rl.generation.settings import GenerationSettings
from reasoning_rl.registry import Registry

__all__ = [
    "BACKENDS", "BudgetForcedBackend", "BudgetForcing", "Completion", "GenerationBackend", "GenerationSettings",
    "SamplingParams",
    "budget_forcing_from_cfg", "build_backend", "register_backend", "sampling_params_from_cfg", "with_budget_forcing",
]

# generation.backend=NAME: `factory(settings, *, model, tokenizer, model_path) -> GenerationBackend`, where
# settings is the GenerationSettings (settings.options: the whole generation block, for its own keys). A new
# module in reasoning_rl/generation/ that registers one is found without an import list; the two built-in
# factories are here, so that naming them imports neither torch nor vLLM.
BACKENDS: Registry[Callable[..., GenerationBackend]] = Registry("generation backend",
                                                               package="reasoning_rl.generation")
register_backend = BACKENDS.register
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


@register_backend("hf")
def _hf_backend(settings: GenerationSettings, *, model, tokenizer, model_path: str | None) -> GenerationBackend:
    if model is None or tokenizer is None:
        raise ValueError("the hf backend needs a loaded model and tokenizer")
    from reasoning_rl.generation.hf import HFBackend

    return HFBackend(model, tokenizer, decode=settings.decode)


@register_backend("vllm")
def _vllm_backend(settings: GenerationSettings, *, model, tokenizer, model_path: str | None) -> GenerationBackend:
    if model_path is None:
        raise ValueError("the vllm backend needs model_path")
    from reasoning_rl.generation.vllm import VLLMBackend

    engine = {k: settings.options[k] for k in VLLM_ENGINE_KEYS if settings.options.get(k) is not None}
    return VLLMBackend(model_path, **engine)


def build_backend(settings: GenerationSettings | Any, model=None, tokenizer=None,
                  model_path: str | None = None) -> GenerationBackend:
    """The configured backend, wrapped in budget forcing when `generation.budget_forcing.enabled`.
    `settings`: the job's GenerationSettings (a plain generation block is built into one).

    With generation=vllm and a live `model` but no `model_path`, the HF backend samples that model:
    a second engine would not see the weights being trained. A GRPO run's in-training evaluation
    normally samples through TRL's own colocated engine instead (`TrainContext.eval_backend`, set by
    algorithms/grpo.py); this fallback is what it gets where that engine can't be used (vLLM sleep mode,
    tensor parallelism).
    """
    settings = GenerationSettings.from_cfg(settings)
    backend = settings.backend
    if backend == "vllm" and model is not None and model_path is None:
        backend = "hf"
    sampler = BACKENDS.get(backend)(settings, model=model, tokenizer=tokenizer, model_path=model_path)
    return with_budget_forcing(sampler, settings)


def with_budget_forcing(sampler: GenerationBackend, settings: GenerationSettings) -> GenerationBackend:
    """`sampler` wrapped in budget forcing when the settings ask for it, else itself."""
    return BudgetForcedBackend(sampler, settings.budget_forcing) if settings.budget_forcing else sampler


def sampling_params_from_cfg(gen_cfg: Any, *, n: int, seed: int) -> SamplingParams:
    """generation.*'s sampling keys (absent or null: SamplingParams' defaults), checked."""
    defaults = SamplingParams()
    stop = gen_cfg.get("stop_strings")
    if isinstance(stop, str):  # a string is a sequence of letters: it would stop at each of them
        raise ConfigError(f"generation.stop_strings={stop} is one string, not a list; write "
                          f"generation.stop_strings=[{stop}]")
    if stop is not None and not isinstance(stop, Sequence):
        raise ConfigError(f"generation.stop_strings must be a list of strings, got {stop!r}")
    for item in stop or []:
        if not isinstance(item, str) or not item:  # "" would end every completion at once
            raise ConfigError(f"generation.stop_strings must hold non-empty strings, got {item!r}")

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
