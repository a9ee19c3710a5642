"""Budget forcing: the controller against a scripted model (exact positions), then on the HF backend with
the embedded SmolLM2, then as GRPO's rollout function."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from reasoning_rl.errors import ConfigError
from reasoning_rl.generation import (
    BudgetForcedBackend,
    BudgetForcing,
    Completion,
    SamplingParams,
    budget_forcing_from_cfg,
    build_backend,
)
from reasoning_rl.generation.rollout import backend_rollout, injected_mask

EOS = 0  # the scripted model's end-of-sequence token


class CharTokenizer:
    """One token per character (token id = code point), so token budgets are character counts."""

    eos_token_id = EOS

    def __call__(self, text, add_special_tokens=False):
        if isinstance(text, list):
            return {"input_ids": [[ord(ch) for ch in t] for t in text]}
        return {"input_ids": [ord(ch) for ch in text]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if not (skip_special_tokens and i == EOS))


class ScriptedBackend:
    """A deterministic 'model': while its output has no </think> it writes `thought` (repeated forever
    if `endless`) then </think>; after </think> it writes `answer` then EOS. Honors stop strings, limits."""

    def __init__(self, thought="abc", answer="42", endless=False, drop_stop_tokens=False):
        self.tokenizer = CharTokenizer()
        self.eos_ids = {EOS}
        self.thought, self.answer, self.endless = thought, answer, endless
        self.drop_stop_tokens = drop_stop_tokens  # like a backend that leaves a stop string out of token_ids
        self.calls = []

    def encode(self, prompts):
        return self.tokenizer(prompts)["input_ids"]

    def _stream(self, generated: str):
        if "</think>" in generated:
            yield from self.answer
            yield EOS
        elif self.endless:
            while True:
                yield from self.thought
        else:
            yield from self.thought + "</think>"

    def generate_ids(self, prompt_ids, params, *, progress=True, limits=None):
        self.calls.append(len(prompt_ids))
        results = []
        for i, prompt in enumerate(prompt_ids):
            limit = limits[i] if limits else params.max_new_tokens
            generated = self.tokenizer.decode(prompt).split("|", 1)[1]  # prompts are "question|"
            samples = []
            for _ in range(params.n):
                ids, reason = [], "length"
                for ch in self._stream(generated):
                    ids.append(ch if ch == EOS else ord(ch))
                    text = self.tokenizer.decode(ids)
                    if ch == EOS or any(text.endswith(s) for s in params.stop_strings):
                        reason = "stop"
                        hit = next((s for s in params.stop_strings if text.endswith(s)), "")
                        if self.drop_stop_tokens and hit:
                            ids = ids[: len(ids) - len(hit)]
                        break
                    if len(ids) == limit:
                        break
                samples.append(Completion(self.tokenizer.decode(ids), len(ids), reason, token_ids=ids))
            results.append(samples)
        return results


def forced(backend, max_new_tokens=64, n=2, **config):
    wrapped = BudgetForcedBackend(backend, BudgetForcing(enabled=True, **config))
    params = SamplingParams(n=n, max_new_tokens=max_new_tokens, temperature=0.0)
    return wrapped, wrapped.generate(["q1|", "q2|"], params, progress=False)


def text_of(ids):
    return CharTokenizer().decode(ids)


@pytest.mark.parametrize("m", [0, 1, 3])
def test_a_closing_model_is_extended_exactly_m_times(m):
    wrapped, results = forced(ScriptedBackend(), num_extensions=m)
    for c in (c for per_prompt in results for c in per_prompt):
        assert c.extensions == m
        # The wait text replaces each early close, then the thinking closes for real and the answer follows.
        assert c.text == "abc" + "Waitabc" * m + "</think>42"
        assert c.finish_reason == "stop" and c.token_ids[-1] == EOS and c.num_tokens == len(c.token_ids)
        assert [text_of(c.token_ids[b:e]) for b, e in c.injected] == ["Wait"] * m
        assert c.thinking_tokens == len("abc" + "Waitabc" * m)
    assert wrapped.last_stats["extensions_mean"] == m


def test_a_backend_that_drops_the_stop_tokens_still_gets_its_close():
    _, results = forced(ScriptedBackend(drop_stop_tokens=True), num_extensions=1)
    c = results[0][0]
    assert c.text == "abcWaitabc</think>42" and c.extensions == 1
    assert [text_of(c.token_ids[b:e]) for b, e in c.injected] == ["Wait", "</think>"]


def test_min_thinking_tokens_extends_until_the_minimum():
    _, results = forced(ScriptedBackend(), min_thinking_tokens=12)
    c = results[0][0]
    # abc (3) < 12 -> Wait; abcWaitabc (10) < 12 -> Wait; 17 >= 12 -> the close is accepted.
    assert c.extensions == 2 and c.text == "abcWaitabcWaitabc</think>42"


def test_max_thinking_tokens_forces_the_close_and_the_answer_prefix():
    backend = ScriptedBackend(thought="x", endless=True)
    _, results = forced(backend, max_new_tokens=40, max_thinking_tokens=10, answer_prefix="\n<answer>")
    c = results[1][1]
    assert c.thinking_tokens == 10 and c.text.startswith("x" * 10 + "</think>\n<answer>")
    assert c.text.endswith("42") and c.finish_reason == "stop" and c.num_tokens <= 40
    assert [text_of(c.token_ids[b:e]) for b, e in c.injected] == ["</think>\n<answer>"]


def test_max_new_tokens_is_respected_while_extending():
    backend = ScriptedBackend(thought="abcdefgh")
    _, results = forced(backend, max_new_tokens=30, num_extensions=10)
    for c in (c for per_prompt in results for c in per_prompt):
        assert c.num_tokens == len(c.token_ids) <= 30
        assert c.extensions < 10  # the budget ran out before the ten extensions did


def test_round_zero_samples_all_prompts_in_one_call():
    backend = ScriptedBackend()
    forced(backend, num_extensions=1)
    assert backend.calls[0] == 2  # both prompts, n each: the same call (and seeds) as without forcing


def test_config_from_yaml_and_its_checks():
    gen = OmegaConf.create({"max_new_tokens": 64, "budget_forcing": {"enabled": True, "num_extensions": 2,
                                                                     "answer_prefix": None, "answer_format": "boxed"}})
    config = budget_forcing_from_cfg(gen)
    assert config.num_extensions == 2 and config.answer_prefix.endswith("\\boxed{") and config.wait_text == "Wait"
    assert budget_forcing_from_cfg({"budget_forcing": {"enabled": False}}) is None
    assert budget_forcing_from_cfg({}) is None
    bad = [({"max_thinking_tokens": 64}, "no room for the answer"), ({"num_extensions": -1}, ">= 0"),
           ({"max_thinking_tokens": 4, "min_thinking_tokens": 8}, "below min_thinking_tokens"),
           ({"wait": "Hmm"}, "not a budget forcing option")]
    for extra, message in bad:
        with pytest.raises(ConfigError, match=message):
            budget_forcing_from_cfg({"max_new_tokens": 64, "budget_forcing": {"enabled": True, **extra}})


def test_injected_mask():
    assert injected_mask(6, [(1, 3), (5, 6)]) == [1, 0, 0, 1, 1, 0]


# --- the HF backend with the embedded model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], tokenize=False,
                                           add_generation_prompt=True)
    return model, tokenizer, prompt


@pytest.fixture(scope="module")
def model_and_tokenizer():
    from reasoning_rl.models import load_model_and_tokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core box: see test_generation.py
    yield load_model_and_tokenizer({"name_or_path": "smollm2-135m-instruct", "source": "embedded"}, device="cpu")
    torch.set_num_threads(threads)


GREEDY = SamplingParams(n=1, max_new_tokens=40, temperature=0.0)


def test_hf_model_stopping_early_gets_wait_appended(hf):
    model, tokenizer, prompt = hf
    (plain,) = build_backend({"backend": "hf"}, model, tokenizer).generate([prompt], GREEDY, progress=False)[0]
    assert plain.finish_reason == "stop" and plain.num_tokens < 20  # it ends by itself: EOS would end the sample
    gen = {"backend": "hf", "max_new_tokens": 40, "budget_forcing": {"enabled": True, "num_extensions": 1}}
    backend = build_backend(gen, model, tokenizer)
    (c,) = backend.generate([prompt], GREEDY, progress=False)[0]
    assert c.extensions == 1
    # The first round is the plain greedy answer minus its EOS; the wait text follows it, then the model goes on.
    assert c.token_ids[: plain.num_tokens - 1] == plain.token_ids[:-1]
    (start, end), = c.injected
    assert start == plain.num_tokens - 1 and tokenizer.decode(c.token_ids[start:end]) == "Wait"
    assert c.text.startswith(plain.text + "Wait") and c.num_tokens <= 40
    assert backend.last_stats["extensions_mean"] == 1.0 and backend.last_stats["rounds"] >= 2


def test_hf_end_think_is_cut_and_replaced(hf):
    # "=" stands in for </think> (this model never writes the tag): a marker greedy decoding is sure to produce.
    model, tokenizer, prompt = hf
    (plain,) = build_backend({"backend": "hf"}, model, tokenizer).generate([prompt], GREEDY, progress=False)[0]
    assert "=" in plain.text
    gen = {"backend": "hf", "max_new_tokens": 40,
           "budget_forcing": {"enabled": True, "num_extensions": 1, "end_think": "=", "max_thinking_tokens": 30}}
    (c,) = build_backend(gen, model, tokenizer).generate([prompt], GREEDY, progress=False)[0]
    before = plain.text[: plain.text.index("=")]
    start, end = c.injected[0]
    assert tokenizer.decode(c.token_ids[start:end]) == "Wait"
    assert before.startswith(tokenizer.decode(c.token_ids[:start])) and "=" not in tokenizer.decode(c.token_ids[:start])
    assert c.thinking_tokens <= 30 and c.num_tokens <= 40


def test_grpo_rollout_masks_the_injected_tokens(hf):
    model, tokenizer, _ = hf
    trainer = SimpleNamespace(
        args=SimpleNamespace(max_completion_length=24, temperature=0.7, top_p=1.0, top_k=0),
        processing_class=tokenizer, model_wrapped=model, state=SimpleNamespace(global_step=3),
        accelerator=SimpleNamespace(unwrap_model=lambda m: m, process_index=0),
        _metrics={"train": defaultdict(list)},
    )
    rollout = backend_rollout(BudgetForcing(enabled=True, num_extensions=1), seed=0, batch_size=8)
    prompts = [[{"role": "user", "content": "What is 2+3?"}]] * 2 + [[{"role": "user", "content": "Hi"}]] * 2
    out = rollout(prompts, trainer)
    assert len(out["prompt_ids"]) == len(out["completion_ids"]) == len(out["env_mask"]) == 4
    assert out["logprobs"] is None
    wait = tokenizer("Wait", add_special_tokens=False)["input_ids"]
    for ids, mask in zip(out["completion_ids"], out["env_mask"]):
        assert 0 < len(ids) <= 24 and len(mask) == len(ids)
        masked = [t for t, m in zip(ids, mask) if m == 0]
        assert masked in ([], wait)  # only the inserted wait text is excluded from the loss
    assert trainer._metrics["train"]["budget_forcing/extensions_mean"]
    assert rollout(prompts, trainer) == out  # seeded by the step: a resumed run repeats it


# --- the jobs end to end (slow) --------------------------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_job_logs_extensions(tmp_path):
    import json

    from reasoning_rl.tracking.run_dir import read_jsonl
    from tests.helpers import run_job

    run_dir = tmp_path / "run"
    result = run_job("evaluate", "experiment=budget_forcing_gsm8k", "dataset.limit=2", "eval.num_samples=2",
                     "eval.ks=[1,2]", "generation.max_new_tokens=48",
                     "generation.budget_forcing.max_thinking_tokens=32",
                     "logger=none", f"hydra.run.dir={run_dir}", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_jsonl(run_dir / "samples.jsonl")
    assert all(len(r["extensions"]) == 2 and max(r["thinking_tokens"]) <= 32 for r in records)
    assert all(n <= 48 for r in records for n in r["num_tokens"])
    metrics = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "eval/extensions_mean" in r]
    assert metrics and metrics[0]["eval/extensions_mean"] == pytest.approx(
        sum(e for r in records for e in r["extensions"]) / 4)
    assert "budget forcing:" in result.stdout and json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_grpo_trains_with_backend_rollouts(tmp_path):
    from reasoning_rl.tracking.run_dir import read_jsonl
    from tests.helpers import run_job

    run_dir = tmp_path / "run"
    result = run_job("train", "algorithm=grpo", "debug=smoke", "algorithm.rewards=[correctness,parsable_answer]",
                     "algorithm.reward_weights=[1.0,0.5]", "generation.budget_forcing.enabled=true",
                     "generation.budget_forcing.num_extensions=1", "eval.limit=1", "eval.num_samples=2",
                     "eval.ks=[1,2]", "logger=none", f"hydra.run.dir={run_dir}", timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "train/budget_forcing/extensions_mean" in r]
    assert rows and all(0 <= r["train/budget_forcing/extensions_mean"] <= 1 for r in rows)
    assert [r for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
