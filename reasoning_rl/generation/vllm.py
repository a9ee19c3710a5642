"""vLLM generation: much faster sampling, but only on a CUDA GPU."""

from __future__ import annotations

import time

import torch

from reasoning_rl.errors import ConfigError
from reasoning_rl.generation.base import Completion, SamplingParams

_NEEDS_GPU = "generation=vllm needs vLLM and a CUDA GPU: pip install -e .[gpu] on a GPU machine (or use generation=hf)"


class VLLMBackend:
    def __init__(self, model_path: str, **engine_kwargs):
        try:
            import vllm
        except ImportError:
            raise ConfigError(_NEEDS_GPU) from None
        if not torch.cuda.is_available():
            raise ConfigError(_NEEDS_GPU)
        self._vllm = vllm
        self.llm = vllm.LLM(model=model_path, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.last_stats: dict = {}

    def generate(self, prompts: list[str], params: SamplingParams, *, progress: bool = True) -> list[list[Completion]]:
        # Tokenize ourselves: prompts are chat-templated, and vLLM would add a second BOS to templates that have one.
        requests = [{"prompt_token_ids": self.tokenizer(p, add_special_tokens=False)["input_ids"]} for p in prompts]
        sampling = [
            self._vllm.SamplingParams(
                n=params.n,
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else -1,
                # vLLM seeds child j of a request with seed + j; spacing by n keeps every sample's seed distinct.
                seed=params.seed + i * params.n,
                stop=list(params.stop_strings) or None,
            )
            for i in range(len(prompts))
        ]
        start = time.perf_counter()
        outputs = self.llm.generate(requests, sampling, use_tqdm=progress)
        seconds = time.perf_counter() - start
        results = [
            [
                Completion(o.text, len(o.token_ids), "length" if o.finish_reason == "length" else "stop")
                for o in out.outputs
            ]
            for out in outputs
        ]
        tokens = sum(c.num_tokens for per_prompt in results for c in per_prompt)
        self.last_stats = {
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
            "sequences": len(prompts) * params.n,
        }
        return results
