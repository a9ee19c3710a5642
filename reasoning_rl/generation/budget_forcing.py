"""Budget forcing (s1, Muennighoff et al. 2025): control how long a model thinks.

* When the model ends its reasoning (writes `end_think`, or stops altogether while still thinking)
  before `min_thinking_tokens`, the end is cut off, `wait_text` is appended and it continues.
* `num_extensions` = M does the same M times even once the minimum is met ("on demand": think again).
* At `max_thinking_tokens` the thinking is closed for it: `end_think` + the prompt's answer prefix
  (`<answer>` for think_answer) are appended, so the rest of the budget goes to the answer.

The controller drives any backend that continues from token ids (`encode` + `generate_ids`: HF and
vLLM), in rounds: generate until `end_think` / EOS / the thinking cap, decide per sequence, append,
continue. A continuation re-reads its prefix (vLLM's prefix cache makes that nearly free; on HF it
is one prefill per round). Token ids are kept exactly as the model saw them, the inserted ones
listed in `Completion.injected` so an RL loss can mask them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reasoning_rl.errors import ConfigError
from reasoning_rl.generation.base import Completion, SamplingParams, TokenBackend

# What the model is to write right after a forced close, per prompt.answer_format (see prompts.format_answer).
ANSWER_PREFIXES = {"answer_tag": "\n<answer>", "boxed": "\nThe final answer is \\boxed{"}
_ROUND_SEED_STRIDE = 1_000_003  # each round draws from its own seeds (round r: seed + r * stride)


@dataclass
class BudgetForcing:
    enabled: bool = False
    min_thinking_tokens: int = 0
    max_thinking_tokens: int | None = None  # None: only max_new_tokens caps the thinking
    num_extensions: int = 0  # M: append wait_text this many times even after the minimum is met
    wait_text: str = "Wait"
    end_think: str = "</think>"
    answer_prefix: str = ANSWER_PREFIXES["answer_tag"]


def budget_forcing_from_cfg(gen_cfg: Mapping[str, Any], max_new_tokens: int | None = None) -> BudgetForcing | None:
    """The `generation.budget_forcing` block, checked; None when it is absent or disabled."""
    block = gen_cfg.get("budget_forcing") if gen_cfg is not None else None
    if not block or not block.get("enabled", False):
        return None
    known = set(BudgetForcing.__dataclass_fields__) | {"answer_format"}
    unknown = sorted(set(block) - known)
    if unknown:
        raise ConfigError(f"generation.budget_forcing.{unknown[0]} is not a budget forcing option; "
                          f"known: {sorted(known)}")
    values = {k: v for k, v in block.items() if k in BudgetForcing.__dataclass_fields__ and v is not None}
    if block.get("answer_prefix") is None:  # null: follow the prompt's answer format
        answer_format = block.get("answer_format") or "answer_tag"
        if answer_format not in ANSWER_PREFIXES:
            raise ConfigError(f"generation.budget_forcing: no answer prefix for answer_format={answer_format!r}; "
                              "set answer_prefix")
        values["answer_prefix"] = ANSWER_PREFIXES[answer_format]
    config = BudgetForcing(**values)
    _check(config, max_new_tokens if max_new_tokens is not None else gen_cfg.get("max_new_tokens"))
    return config


def _check(c: BudgetForcing, max_new_tokens: int | None) -> None:
    name = "generation.budget_forcing"
    if c.min_thinking_tokens < 0 or c.num_extensions < 0:
        raise ConfigError(f"{name}.min_thinking_tokens and num_extensions must be >= 0")
    if not c.wait_text or not c.end_think:
        raise ConfigError(f"{name}.wait_text and end_think must not be empty")
    if c.max_thinking_tokens is not None:
        if c.max_thinking_tokens < 1:
            raise ConfigError(f"{name}.max_thinking_tokens must be >= 1 (or null)")
        if c.max_thinking_tokens < c.min_thinking_tokens:
            raise ConfigError(f"{name}.max_thinking_tokens={c.max_thinking_tokens} "
                              f"is below min_thinking_tokens={c.min_thinking_tokens}")
        if max_new_tokens is not None and c.max_thinking_tokens >= int(max_new_tokens):
            raise ConfigError(
                f"{name}.max_thinking_tokens={c.max_thinking_tokens} leaves no room for the answer within "
                f"generation.max_new_tokens={max_new_tokens}"
            )


@dataclass
class _Sequence:
    """One sample being forced: where it is, and what was generated or inserted so far."""

    prompt: int
    ids: list[int] = field(default_factory=list)
    injected: list[tuple[int, int]] = field(default_factory=list)
    extensions: int = 0
    thinking_tokens: int | None = None  # set when the thinking ends (closed, forced closed, or the sample ended)
    finish_reason: str | None = None  # set when done

    @property
    def thinking(self) -> bool:
        return self.thinking_tokens is None

    def inject(self, ids: list[int]) -> None:
        if not ids:
            return
        self.injected.append((len(self.ids), len(self.ids) + len(ids)))
        self.ids += ids


class BudgetForcedBackend(TokenBackend):
    """Wraps a backend: same `generate` interface, completions shaped by a `BudgetForcing` config."""

    def __init__(self, backend, config: BudgetForcing):
        if not hasattr(backend, "generate_ids"):
            raise ConfigError(f"budget forcing needs a backend that continues from token ids; "
                              f"{type(backend).__name__} can't")
        self.backend = backend
        self.config = config
        self.tokenizer = backend.tokenizer
        self.eos_ids = set(backend.eos_ids)
        encode = lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        self.wait_ids = encode(config.wait_text)
        self.end_ids = encode(config.end_think)
        self.close_ids = self.end_ids + encode(config.answer_prefix)
        self.last_stats: dict = {}

    def __getattr__(self, name: str):  # model, eos_ids, encode, … of the wrapped backend
        return getattr(self.__dict__["backend"], name)

    def generate_ids(
        self, prompt_ids: list[list[int]], params: SamplingParams, *, progress: bool | str = True
    ) -> list[list[Completion]]:
        _check(self.config, params.max_new_tokens)
        start = time.perf_counter()
        sequences = [_Sequence(p) for p in range(len(prompt_ids)) for _ in range(params.n)]
        rounds = 0
        while True:
            live = [s for s in sequences if s.finish_reason is None]
            if not live:
                break
            limits = [self._limit(s, params) for s in live]
            thinking = [s.thinking for s in live]
            # Round 0 is the plain N-per-prompt call (same seeds as without forcing); later rounds continue
            # each sequence on its own. The end-of-thinking marker is a stop string only while thinking.
            for phase in (True, False):
                group = [(s, lim) for s, lim, t in zip(live, limits, thinking) if t is phase]
                if not group:
                    continue
                stops = list(params.stop_strings) + ([self.config.end_think] if phase else [])
                round_params = replace(
                    params, seed=params.seed + rounds * _ROUND_SEED_STRIDE + (0 if phase else 1),
                    stop_strings=stops, max_new_tokens=max(lim for _, lim in group),
                )
                if rounds == 0:
                    outputs = self.backend.generate_ids(prompt_ids, round_params, progress=progress)
                    pieces = [c for per_prompt in outputs for c in per_prompt]
                else:
                    continued = [prompt_ids[s.prompt] + s.ids for s, _ in group]
                    outputs = self.backend.generate_ids(
                        continued, replace(round_params, n=1), progress=False, limits=[lim for _, lim in group]
                    )
                    pieces = [per_prompt[0] for per_prompt in outputs]
                for (s, _), piece in zip(group, pieces, strict=True):
                    self._advance(s, piece, params)
            rounds += 1

        results: list[list[Completion]] = [[] for _ in prompt_ids]
        for s in sequences:
            results[s.prompt].append(self._completion(s, params))
        self._record_stats(results, rounds, time.perf_counter() - start)
        return results

    def _limit(self, s: _Sequence, params: SamplingParams) -> int:
        room = params.max_new_tokens - len(s.ids)
        if s.thinking and self.config.max_thinking_tokens is not None:
            room = min(room, self.config.max_thinking_tokens - len(s.ids))
        return max(room, 1)

    def _advance(self, s: _Sequence, piece: Completion, params: SamplingParams) -> None:
        """Take one round's output for a sequence and decide: continue, extend, close, or finish."""
        c = self.config
        new = list(piece.token_ids)
        if not s.thinking:  # the answer: whatever it ends with ends the sample
            s.ids += new
            s.finish_reason = piece.finish_reason
            return
        ended_thinking = None  # the tokens before the end of thinking, when the model tried to end it
        close_missing = False  # the backend left the stop string's own tokens out of token_ids
        if piece.finish_reason == "stop":
            if new and new[-1] in self.eos_ids:
                ended_thinking = new[:-1]
            elif c.end_think in self._text(s.ids + new):
                ended_thinking = self._before(s.ids, new, c.end_think)
            elif any(stop in self._text(new) for stop in params.stop_strings):  # the caller's own stop string
                s.ids += new
                s.thinking_tokens, s.finish_reason = len(s.ids), "stop"
                return
            else:
                ended_thinking, close_missing = new, True
        if ended_thinking is not None:
            thought = len(s.ids) + len(ended_thinking)
            wants_more = thought < c.min_thinking_tokens or s.extensions < c.num_extensions
            fits = thought + len(self.wait_ids) < min(params.max_new_tokens,
                                                      c.max_thinking_tokens or params.max_new_tokens)
            if wants_more and fits:
                s.ids += ended_thinking
                s.inject(self.wait_ids)
                s.extensions += 1
                return
            s.ids += new
            s.thinking_tokens = thought
            if close_missing:  # keep the close in the ids the model is continued from
                s.inject(self.end_ids[: params.max_new_tokens - len(s.ids)])
            if new and new[-1] in self.eos_ids:  # stopped without closing: the sample is over
                s.finish_reason = "stop"
            elif len(s.ids) >= params.max_new_tokens:
                s.finish_reason = "length"
            return
        # The round hit its cap: the thinking budget (force the close) or the whole budget (done).
        s.ids += new
        room = params.max_new_tokens - len(s.ids)
        if c.max_thinking_tokens is not None and len(s.ids) >= c.max_thinking_tokens and room > 0:
            s.thinking_tokens = len(s.ids)
            s.inject(self.close_ids[:room])
            if len(s.ids) >= params.max_new_tokens:
                s.finish_reason = "length"
        else:  # the whole budget is spent while thinking
            s.thinking_tokens, s.finish_reason = len(s.ids), "length"

    def _text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _before(self, done: list[int], new: list[int], marker: str) -> list[int]:
        """The new tokens before the one where `marker` starts (the stop criterion ended the round on it)."""
        at = self._text(done + new).rfind(marker)
        cut = len(new)
        while cut > 0 and len(self._text(done + new[:cut])) > at:
            cut -= 1
        return new[:cut]

    def _completion(self, s: _Sequence, params: SamplingParams) -> Completion:
        eos = bool(s.ids) and s.ids[-1] in self.eos_ids and not any(e == len(s.ids) for _, e in s.injected)
        text = self._text(s.ids[:-1] if eos else s.ids)
        cuts = [k for k in (text.find(t) for t in params.stop_strings) if k >= 0]
        if cuts:
            text = text[: min(cuts)]
        return Completion(
            text, len(s.ids), s.finish_reason or "length", token_ids=s.ids, injected=s.injected,
            extensions=s.extensions, thinking_tokens=s.thinking_tokens if s.thinking_tokens is not None else len(s.ids),
        )

    def _record_stats(self, results: list[list[Completion]], rounds: int, seconds: float) -> None:
        flat = [c for per_prompt in results for c in per_prompt]
        tokens = sum(c.num_tokens for c in flat)
        n = max(1, len(flat))
        self.last_stats = {
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
            "sequences": len(flat),
            "rounds": rounds,
            "extensions_mean": sum(c.extensions for c in flat) / n,
            "thinking_tokens_mean": sum(c.thinking_tokens or 0 for c in flat) / n,
            "injected_tokens": sum(e - b for c in flat for b, e in c.injected),
        }
