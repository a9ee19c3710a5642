"""The generation backends, with the real embedded SmolLM2 on CPU (small token budgets keep this fast)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from reasoning_rl.errors import ConfigError
from reasoning_rl.generation import SamplingParams, build_backend, sampling_params_from_cfg
from reasoning_rl.generation.hf import HFBackend
from reasoning_rl.generation.vllm import VLLMBackend
from reasoning_rl.models import load_model_and_tokenizer

MODEL = {"name_or_path": "smollm2-135m-instruct", "source": "embedded", "dtype": "float32"}
# Different lengths, listed out of length order, so sorting into batches and restoring order is exercised.
QUESTIONS = ["What is 2+3?", "Write a long story about a dragon who learns to fly over the mountains.", "Hi"]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return load_model_and_tokenizer(MODEL, device="cpu")


@pytest.fixture(scope="module")
def backend(model_and_tokenizer):
    return build_backend({"backend": "hf"}, *model_and_tokenizer)


@pytest.fixture(scope="module")
def prompts(model_and_tokenizer):
    tokenizer = model_and_tokenizer[1]
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in QUESTIONS
    ]


def texts(results):
    return [[c.text for c in per_prompt] for per_prompt in results]


@pytest.fixture(scope="module")
def sampled(backend, prompts):
    # batch_size 5 < 3 prompts x 4 samples: a prompt's samples are split across batches.
    return backend.generate(prompts, SamplingParams(n=4, max_new_tokens=10, batch_size=5, seed=0), progress=False)


def test_n_completions_per_prompt_and_stats(backend, sampled):
    assert [len(per_prompt) for per_prompt in sampled] == [4, 4, 4]
    for completion in (c for per_prompt in sampled for c in per_prompt):
        assert 0 < completion.num_tokens <= 10
        assert completion.finish_reason in ("stop", "length")
        if completion.finish_reason == "length":  # "stop" may also land exactly on the cap (EOS as 10th token)
            assert completion.num_tokens == 10
        assert "<|im_end|>" not in completion.text
    stats = backend.last_stats
    assert stats["sequences"] == 12 and stats["tokens"] == sum(c.num_tokens for p in sampled for c in p)
    assert stats["seconds"] > 0 and stats["tokens_per_s"] > 0


def test_same_seed_same_samples_other_seed_differs(backend, prompts, sampled):
    again = backend.generate(prompts, SamplingParams(n=4, max_new_tokens=10, batch_size=5, seed=0), progress=False)
    assert texts(again) == texts(sampled)
    other = backend.generate(prompts, SamplingParams(n=4, max_new_tokens=10, batch_size=5, seed=1), progress=False)
    assert texts(other) != texts(sampled)


def test_results_follow_prompt_order(backend, prompts):
    greedy = SamplingParams(n=2, max_new_tokens=8, temperature=0.0, batch_size=6)
    together = backend.generate(prompts, greedy, progress=False)
    for prompt, per_prompt in zip(prompts, together):
        alone = backend.generate([prompt], greedy, progress=False)[0]
        assert [c.text for c in per_prompt] == [c.text for c in alone]
        assert per_prompt[0].text == per_prompt[1].text  # greedy repeats are identical


def test_eos_stops_and_length_caps(backend, prompts):
    short, long = prompts[0], prompts[1]
    done, capped = backend.generate([short, long], SamplingParams(n=1, max_new_tokens=16, temperature=0.0), progress=False)
    assert done[0].finish_reason == "stop" and "5" in done[0].text and done[0].num_tokens < 16
    assert capped[0].finish_reason == "length" and capped[0].num_tokens == 16


def test_stop_strings_cut_the_text(backend, prompts):
    params = SamplingParams(n=1, max_new_tokens=16, temperature=0.0, stop_strings=["="])
    (completion,) = backend.generate([prompts[0]], params, progress=False)[0]
    assert completion.finish_reason == "stop" and "=" not in completion.text and completion.num_tokens < 16


def test_training_mode_is_restored(backend, prompts):
    backend.model.train()
    try:
        backend.generate([prompts[2]], SamplingParams(n=1, max_new_tokens=2), progress=False)
        assert backend.model.training
    finally:
        backend.model.eval()


def test_sampling_params_from_cfg():
    cfg = OmegaConf.create({"backend": "hf", "max_new_tokens": 32, "temperature": 0.0, "stop_strings": ["\n\n"]})
    params = sampling_params_from_cfg(cfg, n=3, seed=7)
    assert (params.n, params.seed, params.max_new_tokens, params.temperature) == (3, 7, 32, 0.0)
    assert params.stop_strings == ["\n\n"] and isinstance(params.stop_strings, list)
    assert params.top_p == SamplingParams().top_p and params.batch_size == SamplingParams().batch_size


def test_build_backend(model_and_tokenizer):
    assert isinstance(build_backend(OmegaConf.create({"backend": "hf"}), *model_and_tokenizer), HFBackend)
    with pytest.raises(ConfigError, match="hf, vllm"):
        build_backend({"backend": "tgi"}, *model_and_tokenizer)


def test_vllm_without_gpu_is_a_config_error():
    message = "generation=vllm needs vLLM and a CUDA GPU: pip install -e .[gpu] on a GPU machine (or use generation=hf)"
    with pytest.raises(ConfigError) as info:
        build_backend({"backend": "vllm", "gpu_memory_utilization": 0.5}, model_path="/models/x")
    assert str(info.value) == message
    with pytest.raises(ConfigError):
        VLLMBackend("/models/x")
