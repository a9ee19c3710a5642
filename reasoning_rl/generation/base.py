"""What every generation backend takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# generation.decode of the HF backend: rows leave a dynamic cache as they finish, or a fixed-shape decode
# (generation/static_decode.py), eager or compiled.
DECODES = ("dynamic", "static", "compiled")


@dataclass
class SamplingParams:
    n: int = 8  # completions per prompt
    max_new_tokens: int = 512
    temperature: float = 0.7  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k
    seed: int = 0
    batch_size: int = 64  # most sequences generated together (HF backend; vLLM schedules itself)
    stop_strings: list[str] = field(default_factory=list)


@dataclass
class Completion:
    text: str  # stop strings and special tokens are not included
    num_tokens: int  # generated tokens, counting the EOS token if one was produced
    finish_reason: str  # "stop" (EOS or stop string) | "length"
    # The generated token ids (EOS included when produced; for budget forcing, injected tokens included;
    # None from a backend that does not report them).
    token_ids: list[int] | None = None
    # Budget forcing only: [start, end) spans of token_ids that were inserted (the wait text, a forced
    # close), not sampled; an RL loss should mask them out.
    injected: list[tuple[int, int]] = field(default_factory=list)
    extensions: int = 0  # budget forcing: how many times the wait text was appended
    thinking_tokens: int | None = None  # budget forcing: tokens before the end-of-thinking marker


class GenerationBackend(Protocol):
    last_stats: dict

    def generate(
        self, prompts: list[str], params: SamplingParams, *, progress: bool | str = True
    ) -> list[list[Completion]]:
        """`params.n` completions for each already chat-templated prompt, in prompt order. `progress`: a
        bar, or its label (a bar inside another job's loop, e.g. "eval step 10", cleared when done)."""
        ...


class TokenBackend:
    """A backend that samples from token ids (`encode` + `generate_ids`); text prompts go through both,
    and callers such as budget forcing continue sequences with `generate_ids` directly."""

    def generate(self, prompts: list[str], params: SamplingParams, *,
                 progress: bool | str = True) -> list[list[Completion]]:
        return self.generate_ids(self.encode(prompts), params, progress=progress)


def eos_id_set(tokenizer_eos: int | None, generation_eos: int | list[int] | None) -> set[int]:
    """Every id that ends a sample: chat models end a turn with a token (e.g. <|im_end|>) that may
    differ from the tokenizer's EOS, listed in the model's generation_config."""
    extra = generation_eos if isinstance(generation_eos, list) else [generation_eos]
    return {tokenizer_eos, *extra} - {None}

