"""The generation backends, with the real embedded SmolLM2 on CPU (small token budgets keep this fast)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from omegaconf import OmegaConf
from transformers import GenerationConfig

from reasoning_rl.errors import ConfigError
from reasoning_rl.generation import SamplingParams, build_backend, sampling_params_from_cfg
from reasoning_rl.generation.hf import HFBackend
from reasoning_rl.generation.vllm import VLLMBackend

# Different lengths, listed out of length order, so sorting into batches and restoring order is exercised.
QUESTIONS = ["What is 2+3?", "Write a long story about a dragon who learns to fly over the mountains.", "Hi"]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def model_and_tokenizer(embedded_lm):
    return embedded_lm


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


SAMPLING = SamplingParams(n=3, max_new_tokens=8, batch_size=4, seed=0)


@pytest.fixture(scope="module")
def sampled(backend, prompts):
    # batch_size 4 < 3 prompts x 3 samples: a prompt's samples are split across batches.
    return backend.generate(prompts, SAMPLING, progress=False)


@pytest.fixture(scope="module")
def greedy(backend, prompts):
    return backend.generate(prompts, SamplingParams(n=2, max_new_tokens=16, temperature=0.0), progress=False)


def test_n_completions_per_prompt_and_stats(backend, sampled):
    assert [len(per_prompt) for per_prompt in sampled] == [3, 3, 3]
    for completion in (c for per_prompt in sampled for c in per_prompt):
        assert 0 < completion.num_tokens <= 8
        assert completion.finish_reason in ("stop", "length")
        if completion.finish_reason == "length":  # "stop" may also land exactly on the cap (EOS as 8th token)
            assert completion.num_tokens == 8
        assert "<|im_end|>" not in completion.text
    stats = backend.last_stats
    assert stats["sequences"] == 9 and stats["tokens"] == sum(c.num_tokens for p in sampled for c in p)
    assert stats["seconds"] > 0 and stats["tokens_per_s"] > 0


def test_same_seed_same_samples_other_seed_differs(backend, prompts, sampled):
    assert texts(backend.generate(prompts, SAMPLING, progress=False)) == texts(sampled)
    other = replace(SAMPLING, seed=1)
    assert texts(backend.generate(prompts, other, progress=False)) != texts(sampled)


def test_eos_stops_and_length_caps(greedy):
    short, long, _ = greedy
    assert short[0].finish_reason == "stop" and "5" in short[0].text and short[0].num_tokens < 16
    assert long[0].finish_reason == "length" and long[0].num_tokens == 16
    assert texts(greedy)[0][0] == texts(greedy)[0][1]  # greedy repeats are identical


def test_results_follow_prompt_order(backend, prompts, greedy):
    # Same batch contents after sorting by length, so the only difference can be the order results come back in.
    backwards = backend.generate(prompts[::-1], SamplingParams(n=2, max_new_tokens=16, temperature=0.0), progress=False)
    assert texts(backwards)[::-1] == texts(greedy)


def test_stop_strings_cut_the_text(backend, prompts):
    params = SamplingParams(n=1, max_new_tokens=16, temperature=0.0, stop_strings=["="])
    (completion,) = backend.generate([prompts[0]], params, progress=False)[0]
    assert completion.finish_reason == "stop" and "=" not in completion.text and completion.num_tokens < 16


def test_caller_state_is_restored(backend, prompts):
    backend.model.train()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    try:
        backend.generate([prompts[2]], SamplingParams(n=1, max_new_tokens=2), progress=False)
        assert backend.model.training
        assert torch.equal(torch.rand(3), expected)  # the per-batch reseeding did not leak out
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


def test_row_dropping_matches_plain_generate_for_greedy(backend, prompts, greedy, model_and_tokenizer):
    # Finished rows leave the batch early; greedy tokens must still be exactly what generate() picks.
    model, tokenizer = model_and_tokenizer
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    eos = sorted(backend.eos_ids)
    config = GenerationConfig(max_new_tokens=16, do_sample=False, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    with torch.inference_mode():
        rows = model.generate(**inputs, generation_config=config)[:, inputs["input_ids"].shape[1]:].tolist()
    finished_early = 0
    for per_prompt, row in zip(greedy, rows):
        eos_at = next((k for k, token in enumerate(row) if token in eos), None)
        finished_early += eos_at is not None and eos_at < 15
        expected = row if eos_at is None else row[: eos_at + 1]
        assert [c.token_ids for c in per_prompt] == [expected, expected]
        assert per_prompt[0].num_tokens == len(expected)
    assert finished_early  # some row really left the batch before the others


def test_per_prompt_limits(backend, prompts):
    params = SamplingParams(n=2, max_new_tokens=6, temperature=0.0)
    results = backend.generate_ids(backend.encode(prompts[1:]), params, progress=False, limits=[3, 6])
    assert [c.num_tokens for c in results[0]] == [3, 3] and all(c.finish_reason == "length" for c in results[0])
    assert all(c.num_tokens <= 6 for c in results[1])


def test_train_with_vllm_fails_clearly_here():
    from reasoning_rl.train_job import check_config
    from tests.test_config import compose_resolved

    message = "generation=vllm needs vLLM and a CUDA GPU"
    with pytest.raises(ConfigError, match=message):  # GRPO: TRL's vLLM colocate mode, checked before loading
        check_config(compose_resolved("train", ["generation=vllm"]))
    with pytest.raises(ConfigError, match=message):
        check_config(compose_resolved("train", ["experiment=article_1b_gsm8k"]))
    with pytest.raises(ConfigError, match="algorithm=grpo"):
        check_config(compose_resolved("train", ["generation=vllm", "algorithm=sft"]))
    with pytest.raises(ConfigError, match="budget_forcing with generation=vllm"):
        check_config(compose_resolved("train", ["generation=vllm", "generation.budget_forcing.enabled=true"]))


def test_vllm_without_gpu_is_a_config_error():
    message = "generation=vllm needs vLLM and a CUDA GPU: pip install -e .[gpu] on a GPU machine (or use generation=hf)"
    with pytest.raises(ConfigError) as info:
        build_backend({"backend": "vllm", "gpu_memory_utilization": 0.5}, model_path="/models/x")
    assert str(info.value) == message
    with pytest.raises(ConfigError):
        VLLMBackend("/models/x")


def test_lora_is_merged_while_sampling_and_restored_bit_for_bit(model_and_tokenizer, prompts):
    """On CPU the adapter is folded into the weights while sampling (speed); afterwards every weight is
    exactly what it was, and greedy tokens match the unmerged adapter's own generate()."""
    import copy

    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer

    model, tokenizer = model_and_tokenizer
    lora = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    before = {n: p.detach().clone() for n, p in lora.named_parameters()}
    merges = []
    merge = lora.merge_adapter
    lora.merge_adapter = lambda *a, **k: (merges.append(1), merge(*a, **k))
    params = SamplingParams(n=1, max_new_tokens=6, temperature=0.0, seed=0)
    (ours,) = build_backend({"backend": "hf"}, lora, tokenizer).generate(prompts[:1], params, progress=False)[0]
    assert merges == [1]
    assert all(torch.equal(before[n], p) for n, p in lora.named_parameters())
    assert not any(m.merged for m in lora.modules() if isinstance(m, LoraLayer))
    ids = tokenizer(prompts[:1], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        plain = lora.generate(**ids, max_new_tokens=6, do_sample=False)[0, ids["input_ids"].shape[1]:]
    assert ours.token_ids[: len(plain)] == plain.tolist()[: len(ours.token_ids)]


@pytest.mark.parametrize("progress, shown", [(True, "generate"), ("eval step 3", "eval step 3"), (False, None)])
def test_progress_bar_and_its_label(backend, prompts, capsys, progress, shown):
    """Loops inside a job (in-training eval, self-samples) label their bar; progress=False shows none."""
    backend.generate([prompts[0]], SamplingParams(n=2, max_new_tokens=2), progress=progress)
    err = capsys.readouterr().err
    if shown is None:
        assert "seq" not in err
    else:
        assert f"{shown}: 100%" in err.replace("\r", "\n")


def _chi_square(sampler, probs: torch.Tensor, draws: int) -> tuple[float, int, torch.Tensor]:
    """Pearson's statistic of `draws` samples against `probs`, its degrees of freedom, and the counts."""
    torch.manual_seed(0)
    tokens = torch.cat([sampler(probs.expand(10_000, -1)) for _ in range(draws // 10_000)])
    counts = torch.bincount(tokens, minlength=probs.numel()).double()
    support = probs > 0
    expected = probs.double() * len(tokens)
    stat = (((counts - expected) ** 2)[support] / expected[support]).sum().item()
    return stat, int(support.sum()) - 1, counts


def test_inverse_cdf_draw_has_the_multinomial_distribution():
    from reasoning_rl.generation.hf import sample_from_probs

    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 200, generator=gen) * 2
    logits[0, ::7] = float("-inf")  # zero-probability tokens, as top-k / top-p leave them
    probs = torch.softmax(logits, dim=-1)
    # Chi-square's 1 - 1e-6 quantile is below df + 7 sqrt(2 df) for df ~ 170 (Wilson–Hilferty).
    stat, df, counts = _chi_square(sample_from_probs, probs, 400_000)
    assert counts[::7].sum() == 0  # never a token of probability 0
    assert stat < df + 7 * (2 * df) ** 0.5
    reference, _, _ = _chi_square(lambda p: torch.multinomial(p, 1).squeeze(1), probs, 400_000)
    assert reference < df + 7 * (2 * df) ** 0.5
    # The check can fail: a draw from a slightly sharpened distribution (temperature 0.95) is caught.
    sharpened = lambda p: sample_from_probs(torch.softmax(torch.log(p) / 0.95, dim=-1))  # noqa: E731
    assert _chi_square(sharpened, probs, 400_000)[0] > df + 7 * (2 * df) ** 0.5


def test_preallocated_cache_samples_what_the_dynamic_cache_does(backend, prompts, sampled, monkeypatch):
    """Same arithmetic, same tokens: the pre-allocated KV cache changes where keys live, not their values,
    through prefix sharing, finished rows leaving and split batches."""
    from transformers import DynamicCache

    import reasoning_rl.generation.hf as hf

    monkeypatch.setattr(hf, "decode_cache", lambda config, capacity: DynamicCache(config=config))
    dynamic = backend.generate(prompts, SAMPLING, progress=False)
    assert [[c.token_ids for c in p] for p in dynamic] == [[c.token_ids for c in p] for p in sampled]
