"""generation.decode=static|compiled (generation/static_decode.py): the fixed-shape decode gives the dynamic
decode's greedy tokens and its sampling distribution, through left padding, shared prefills, per-row caps,
stop strings and finished rows moving the batch into smaller buckets."""

from __future__ import annotations

import pytest
import torch

import reasoning_rl.generation.static_decode as static_decode
from reasoning_rl.errors import ConfigError
from reasoning_rl.generation import GenerationSettings, SamplingParams, build_backend
from reasoning_rl.generation.hf import HFBackend

# Short answers and long ones, of different prompt lengths: rows finish at different steps.
QUESTIONS = ["What is 2+3? Reply with the number only.", "Say hi.",
             "Write a long story about a dragon who learns to fly over the mountains.",
             "What is 12 plus 25? Reply with the number only.", "Count from 1 to 20."]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def prompts(embedded_lm):
    tokenizer = embedded_lm[1]
    return [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q in QUESTIONS]


@pytest.fixture
def small_buckets(monkeypatch):
    """Buckets down to one row, so a handful of rows goes through several compactions."""
    monkeypatch.setattr(static_decode, "MIN_BUCKET", 1)


def ids(results):
    return [[(c.token_ids, c.finish_reason, c.text) for c in per_prompt] for per_prompt in results]


GREEDY = SamplingParams(n=2, max_new_tokens=40, temperature=0.0, batch_size=16)


@pytest.fixture(scope="module")
def dynamic_greedy(embedded_lm, prompts):
    return HFBackend(*embedded_lm).generate(prompts, GREEDY, progress=False)


def test_greedy_tokens_are_the_dynamic_decodes(embedded_lm, prompts, dynamic_greedy, small_buckets):
    backend = HFBackend(*embedded_lm, decode="static")
    static = backend.generate(prompts, GREEDY, progress=False)
    assert ids(static) == ids(dynamic_greedy)
    lengths = sorted(c.num_tokens for per_prompt in static for c in per_prompt)
    assert lengths[0] < 20 and lengths[-1] == 40  # rows did finish at different steps
    # 10 rows: a bucket of 16, then smaller ones as rows finished.
    buckets = backend._static.last_buckets
    assert buckets[0] == 16 and len(buckets) >= 3 and buckets == sorted(buckets, reverse=True)


def test_caps_stop_strings_and_split_batches(embedded_lm, prompts, small_buckets):
    params = SamplingParams(n=2, max_new_tokens=30, temperature=0.0, batch_size=4, stop_strings=["."])
    limits = [30, 3, 17, 30, 9]
    dynamic = HFBackend(*embedded_lm).generate_ids(
        HFBackend(*embedded_lm).encode(prompts), params, progress=False, limits=limits)
    backend = HFBackend(*embedded_lm, decode="static")
    static = backend.generate_ids(backend.encode(prompts), params, progress=False, limits=limits)
    assert ids(static) == ids(dynamic)
    assert [c.num_tokens for c in static[1]] == [3, 3]
    assert any(c.finish_reason == "stop" and c.token_ids[-1] not in backend.eos_ids for p in static for c in p)


def test_caches_are_kept_for_the_next_decode(embedded_lm, prompts):
    backend = HFBackend(*embedded_lm, decode="static")
    params = SamplingParams(n=1, max_new_tokens=8, temperature=0.0)
    backend.generate(prompts, params, progress=False)
    caches = dict(backend._static._caches)
    again = build_backend({"backend": "hf", "decode": "static"}, *embedded_lm)  # an evaluation's new backend
    again.generate(prompts, params, progress=False)
    assert again._static is backend._static
    assert all(backend._static._caches[b] is cache for b, cache in caches.items())


def _third_tokens(backend, prompt, temperature: float, draws: int) -> torch.Tensor:
    params = SamplingParams(n=draws, max_new_tokens=3, temperature=temperature, batch_size=100, seed=1)
    [completions] = backend.generate([prompt], params, progress=False)
    return torch.tensor([c.token_ids[2] for c in completions if len(c.token_ids) > 2])


def _same_distribution(a: torch.Tensor, b: torch.Tensor) -> float:
    """p-value of Pearson's chi-square test that two samples of tokens come from one distribution (tokens seen
    fewer than 10 times in all are pooled into one category)."""
    tokens, counts = torch.cat([a, b]).unique(return_counts=True)
    common = tokens[counts >= 10]
    table = torch.tensor([[float((x == t).sum()) for t in common] + [float((~torch.isin(x, common)).sum())]
                          for x in (a, b)], dtype=torch.float64)
    table = table[:, table.sum(0) > 0]
    expected = table.sum(1, keepdim=True) * table.sum(0, keepdim=True) / table.sum()
    stat = ((table - expected) ** 2 / expected).sum()
    df = table.shape[1] - 1
    return torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), stat / 2).item()  # chi2 survival


def test_sampling_has_the_dynamic_decodes_distribution(embedded_lm, prompts):
    """The third token, after two steps of each decode, drawn 600 times from each: the same distribution
    (the static decode draws one uniform per bucket row, so not the same draws)."""
    dynamic = HFBackend(*embedded_lm)
    static = HFBackend(*embedded_lm, decode="static")
    prompt = prompts[2]
    reference = _third_tokens(dynamic, prompt, 0.7, 600)
    assert _same_distribution(reference, _third_tokens(static, prompt, 0.7, 600)) > 1e-3
    # The check can fail: the same decode at temperature 1.2 is told apart.
    assert _same_distribution(reference, _third_tokens(static, prompt, 1.2, 600)) < 1e-3


def test_decode_is_checked_and_reaches_the_backend(embedded_lm):
    with pytest.raises(ConfigError, match="generation.decode='fast' is not one of"):
        GenerationSettings.from_cfg({"backend": "hf", "decode": "fast"})
    assert build_backend({"backend": "hf"}, *embedded_lm)._static is None
    assert build_backend({"backend": "hf", "decode": "compiled"}, *embedded_lm)._static.compiled


def test_sliding_window_models_fall_back_to_the_dynamic_decode():
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, sliding_window=8)
    model = MistralForCausalLM(config)

    class Tokenizer:
        eos_token_id, pad_token_id = 1, 0

    with pytest.warns(UserWarning, match="not full attention"):
        backend = HFBackend(model, Tokenizer(), decode="static")
    assert backend._static is None


@pytest.mark.slow
def test_compiled_decode_gives_the_same_greedy_tokens(embedded_lm, prompts, dynamic_greedy):
    """torch.compile of the step (inductor on CPU, CUDA graphs on a GPU): the same arithmetic, the same tokens."""
    backend = HFBackend(*embedded_lm, decode="compiled")
    assert ids(backend.generate(prompts, GREEDY, progress=False)) == ids(dynamic_greedy)


@pytest.mark.slow
def test_gpu_bench_runs_on_cpu(tmp_path):
    """bench/gpu/bench.py, the device call's first step, at toy size: every arm, the warm-up apart, the
    ratios, and the decodes' greedy tokens agreeing (float32 on CPU: the same arithmetic)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "bench/gpu/bench.py", "--size", "tiny", "--device", "cpu", "--prompts", "2",
                    "--max-new-tokens", "8", "--batch-size", "16", "--grpo-steps", "0", "--repeats", "1",
                    "--decodes", "dynamic,static", "--out", str(out)],
                   check=True, cwd=Path(__file__).resolve().parents[1], timeout=600, capture_output=True)
    result = json.loads(out.read_text())
    assert set(result["generation"]) == {"ours_dynamic", "ours_static", "hf_generate"}
    assert all(run["warmup_s"] > 0 and len(run["rounds"]) == 1 for run in result["generation"].values())
    assert set(result["ours_vs_generate"]) == {"dynamic", "static"}
    assert result["greedy_agreement"] == {"static": 1.0}


def test_grpo_backend_rollouts_use_the_decode(embedded_lm, small_buckets):
    """algorithm.rollouts=ours hands generation.decode to the rollout's backend, whose decoder (caches, graphs)
    outlives the step."""
    from types import SimpleNamespace

    from reasoning_rl.generation.rollout import backend_rollout

    model, tokenizer = embedded_lm
    trainer = SimpleNamespace(
        args=SimpleNamespace(max_completion_length=12, temperature=0.0, top_p=1.0, top_k=0),
        processing_class=tokenizer, model_wrapped=model, state=SimpleNamespace(global_step=3),
        accelerator=SimpleNamespace(unwrap_model=lambda m: m, process_index=0))
    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS[:3] for _ in range(2)]
    static_decode._DECODERS.pop(model, None)
    dynamic = backend_rollout(None, seed=0, batch_size=8)(prompts, trainer)
    assert model not in static_decode._DECODERS
    static = backend_rollout(None, seed=0, batch_size=8, decode="static")(prompts, trainer)
    assert static["completion_ids"] == dynamic["completion_ids"]
    assert static_decode._DECODERS[model][False].last_buckets[0] == 8


def test_the_kept_decoder_does_not_keep_the_model_alive():
    import gc
    import weakref

    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))

    class Tokenizer:
        eos_token_id, pad_token_id = 1, 0

        def decode(self, ids, skip_special_tokens=True):
            return " ".join(map(str, ids))

    backend = HFBackend(model, Tokenizer(), decode="static")
    backend.generate_ids([[5, 6, 7]], SamplingParams(n=2, max_new_tokens=3, temperature=0.0), progress=False)
    assert model in static_decode._DECODERS
    alive = weakref.ref(model)
    del model, backend
    gc.collect()
    assert alive() is None
