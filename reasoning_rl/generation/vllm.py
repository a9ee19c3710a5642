"""vLLM generation: much faster sampling (paged KV cache, continuous batching), but only on a CUDA GPU."""

from __future__ import annotations

import time

import torch

from reasoning_rl.errors import ConfigError
from reasoning_rl.generation.base import Completion, SamplingParams, TokenBackend, eos_id_set

_NEEDS_GPU = "generation=vllm needs vLLM and a CUDA GPU: pip install -e .[gpu] on a GPU machine (or use generation=hf)"


def check_available() -> None:
    """One ConfigError line where vLLM can't run; called by the jobs before anything loads."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise ConfigError(_NEEDS_GPU) from None
    if not torch.cuda.is_available():
        raise ConfigError(_NEEDS_GPU)


def _generation_eos(model_path: str):
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:  # no generation_config.json: the tokenizer's EOS is all there is
        return None


class VLLMBackend(TokenBackend):
    def __init__(self, model_path: str, **engine_kwargs):
        check_available()
        import vllm

        self._attach(vllm.LLM(model=model_path, **engine_kwargs), _generation_eos(model_path))

    @classmethod
    def from_engine(cls, llm, *, generation_eos: int | list[int] | None = None) -> VLLMBackend:
        """A backend over an engine that someone else built and owns: TRL's colocated one in a GRPO run,
        which holds the weights being trained. `generation_eos`: the model's generation_config.eos_token_id."""
        backend = cls.__new__(cls)  # vllm is importable, and the GPU there, since the engine exists
        backend._attach(llm, generation_eos)
        return backend

    def _attach(self, llm, generation_eos: int | list[int] | None) -> None:
        import vllm

        self._vllm = vllm
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        # vLLM stops on the model's generation_config EOS ids too; budget forcing needs to recognise them.
        self.eos_ids = eos_id_set(self.tokenizer.eos_token_id, generation_eos)
        self.last_stats: dict = {}

    def encode(self, prompts: list[str]) -> list[list[int]]:
        # Tokenize ourselves: prompts are chat-templated, and vLLM would add a second BOS to templates that have one.
        return [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]

    def generate_ids(
        self, prompt_ids: list[list[int]], params: SamplingParams, *, progress: bool | str = True,
        limits: list[int] | None = None,
    ) -> list[list[Completion]]:
        requests = [{"prompt_token_ids": list(ids)} for ids in prompt_ids]
        sampling = [
            self._vllm.SamplingParams(
                n=params.n,
                max_tokens=limits[i] if limits else params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else -1,
                # vLLM seeds child j of a request with seed + j; spacing by n keeps every sample's seed distinct.
                seed=params.seed + i * params.n,
                stop=list(params.stop_strings) or None,
            )
            for i in range(len(prompt_ids))
        ]
        start = time.perf_counter()
        outputs = self.llm.generate(requests, sampling, use_tqdm=bool(progress))
        seconds = time.perf_counter() - start
        results = [
            [
                Completion(
                    o.text, len(o.token_ids), "length" if o.finish_reason == "length" else "stop",
                    token_ids=list(o.token_ids),
                )
                for o in out.outputs
            ]
            for out in outputs
        ]
        tokens = sum(c.num_tokens for per_prompt in results for c in per_prompt)
        self.last_stats = {
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
            "sequences": len(prompt_ids) * params.n,
        }
        return results
