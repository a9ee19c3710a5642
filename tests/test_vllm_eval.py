"""GRPO with generation=vllm: the in-training evaluation samples through TRL's colocated vLLM engine
(algorithms/grpo.py trl_engine_eval, TrainContext.eval_backend). No real vLLM here: a fake `vllm` module
and a fake engine shaped like vllm.LLM, and a fake trainer with TRL's weight-sync bookkeeping."""

from __future__ import annotations

import logging
import sys
import types
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from reasoning_rl.algorithms import common
from reasoning_rl.algorithms.common import TrainContext
from reasoning_rl.algorithms.grpo import trl_engine_eval
from reasoning_rl.data.base import Problem
from reasoning_rl.evaluation import EvalSettings
from reasoning_rl.generation import GenerationSettings, SamplingParams
from reasoning_rl.generation.base import Completion
from reasoning_rl.generation.vllm import VLLMBackend
from reasoning_rl.grading import get_grader
from reasoning_rl.settings import JobSettings
from reasoning_rl.tracking.run_dir import RunDir

ANSWER = "<answer>5</answer>"


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


@pytest.fixture(autouse=True)
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.SamplingParams = FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


class FakeTokenizer:
    eos_token_id = 0

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(c) for c in text]}

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


class FakeLLM:
    """vllm.LLM's generate(): one RequestOutput-shaped object per request, `n` outputs each."""

    def __init__(self):
        self.calls = 0
        self.requests: list = []
        self.sampling: list = []

    def get_tokenizer(self):
        return FakeTokenizer()

    def generate(self, requests, sampling, use_tqdm=True):
        self.calls += 1
        self.requests, self.sampling = requests, sampling
        return [SimpleNamespace(outputs=[SimpleNamespace(text=ANSWER, token_ids=[1, 2, 0], finish_reason="stop")
                                         for _ in range(sp.kwargs["n"])])
                for sp in sampling]


class FakeVLLMGeneration:
    def __init__(self, *, sleep: bool = False, tensor_parallel: int = 1):
        self.mode = "colocate"
        self.enable_sleep_mode = sleep
        self.tensor_parallel_size = tensor_parallel
        self.llm = FakeLLM()
        self.syncs = 0

    def sync_weights(self):
        self.syncs += 1


def fake_trainer(**engine):
    # GRPOTrainer.__init__ starts _last_loaded_step at -1: the first rollout always pushes the weights.
    return SimpleNamespace(state=SimpleNamespace(global_step=0), _last_loaded_step=-1,
                           vllm_generation=FakeVLLMGeneration(**engine))


class HFModelNeverSampled:
    """The policy as the callback hands it over; sampling it (the HF path) fails the test."""

    generation_config = SimpleNamespace(eos_token_id=[7, 0])
    device = SimpleNamespace(type="cpu")  # GRPO's algorithm.rollouts=auto looks where the policy is

    def _sampled(self, *args, **kwargs):
        raise AssertionError("the HF model was sampled")

    __call__ = forward = generate = _sampled


GENERATION = GenerationSettings.from_cfg({"backend": "vllm", "max_new_tokens": 4})


def test_the_eval_backend_samples_through_trls_engine():
    trainer = fake_trainer()
    backend = trl_engine_eval(trainer, GENERATION)(HFModelNeverSampled())

    results = backend.generate(["q1", "q2"], SamplingParams(n=2, max_new_tokens=4, seed=3), progress=False)

    llm = trainer.vllm_generation.llm
    assert isinstance(backend, VLLMBackend) and backend.llm is llm
    assert llm.calls == 1
    assert llm.requests == [{"prompt_token_ids": [ord("q"), ord("1")]}, {"prompt_token_ids": [ord("q"), ord("2")]}]
    assert [sp.kwargs["n"] for sp in llm.sampling] == [2, 2]
    assert [sp.kwargs["max_tokens"] for sp in llm.sampling] == [4, 4]
    assert [sp.kwargs["seed"] for sp in llm.sampling] == [3, 5]  # seed + i * n: distinct per sample
    assert results == [[Completion(ANSWER, 3, "stop", token_ids=[1, 2, 0])] * 2] * 2
    # The live model's generation_config EOS ids join the tokenizer's (budget forcing needs every stop id).
    assert backend.eos_ids == {0, 7}


def test_from_engine_wraps_an_engine_without_building_one():
    llm = FakeLLM()
    backend = VLLMBackend.from_engine(llm, generation_eos=9)
    assert backend.llm is llm and backend.eos_ids == {0, 9} and backend.last_stats == {}
    backend.generate(["x"], SamplingParams(n=1, max_new_tokens=2), progress=False)
    assert llm.calls == 1 and backend.last_stats["sequences"] == 1


def test_weights_sync_once_per_step():
    trainer = fake_trainer()
    engine = trainer.vllm_generation
    make = trl_engine_eval(trainer, GENERATION)
    model = HFModelNeverSampled()

    make(model)
    make(model)  # a second eval at the same step: the engine already holds these weights
    assert engine.syncs == 1 and trainer._last_loaded_step == 0

    trainer.state.global_step = 5
    make(model)
    assert engine.syncs == 2 and trainer._last_loaded_step == 5
    # TRL's next rollout at this step checks the same fields: it won't push the weights a second time.
    assert trainer.state.global_step == trainer._last_loaded_step


class FakeTracker:
    def __init__(self):
        self.logged: list = []

    def log(self, metrics, step):
        self.logged.append((step, dict(metrics)))

    def log_samples(self, records, step, problems=None):
        pass


def train_context(tmp_path) -> TrainContext:
    problems = [Problem(id=f"p{i}", messages=[{"role": "user", "content": f"2 + 3 = ? ({i})"}], gold="5")
                for i in range(3)]
    return TrainContext(
        cfg=OmegaConf.create({"seed": 0, "prompt": {"answer_format": "answer_tag"}}),
        settings=JobSettings(generation=GENERATION, eval=EvalSettings.from_cfg({"num_samples": 2, "ks": [1, 2]})),
        run_dir=RunDir(tmp_path / "run"), tracker=FakeTracker(), model=HFModelNeverSampled(),
        tokenizer=FakeTokenizer(), train_problems=[], eval_problems=problems,
        grader=get_grader("numeric", answer_format="answer_tag"),
    )


def test_run_eval_samples_with_the_eval_backend(tmp_path):
    trainer = fake_trainer()
    trainer.state.global_step = 3
    ctx = train_context(tmp_path)
    ctx.eval_backend = trl_engine_eval(trainer, ctx.settings.generation)

    result = ctx.run_eval(ctx.model, 3)  # build_backend would sample ctx.model (HF), which raises

    llm = trainer.vllm_generation.llm
    assert llm.calls == 1 and trainer.vllm_generation.syncs == 1 and trainer._last_loaded_step == 3
    prompt = FakeTokenizer().apply_chat_template(ctx.eval_problems[0].messages)
    assert llm.requests[0] == {"prompt_token_ids": [ord(c) for c in prompt]}
    assert result.summary["pass@1"]["mean"] == 1.0
    assert (tmp_path / "run" / "samples_step3.jsonl").is_file()


@pytest.mark.parametrize("engine, reason", [
    ({"sleep": True}, "algorithm.args.vllm_enable_sleep_mode is on (TRL's engine sleeps between its rollouts)"),
    ({"tensor_parallel": 2}, "algorithm.args.vllm_tensor_parallel_size > 1 (each process evaluates its own problems)"),
], ids=["sleep_mode", "tensor_parallel"])
def test_an_engine_it_cant_use_falls_back_to_hf_with_a_warning(engine, reason, tmp_path, monkeypatch, caplog):
    trainer = fake_trainer(**engine)
    ctx = train_context(tmp_path)
    with caplog.at_level(logging.WARNING, logger="reasoning_rl.algorithms.grpo"):
        ctx.eval_backend = trl_engine_eval(trainer, ctx.settings.generation)
    assert ctx.eval_backend is None
    assert [r.getMessage() for r in caplog.records] == [
        f"the in-training evaluation samples with the HF backend, not TRL's vLLM engine: {reason}"]

    built = []

    class Sampled:  # what build_backend's HF path returns, standing in for sampling the live model
        last_stats: dict = {}

        def generate(self, prompts, params, *, progress=True):
            return [[Completion(ANSWER, 3, "stop")] * params.n for _ in prompts]

    def spy(settings, model=None, tokenizer=None, model_path=None):
        built.append((settings.backend, model, model_path))
        return Sampled()

    monkeypatch.setattr(common, "build_backend", spy)
    ctx.run_eval(ctx.model, 0)
    assert built == [("vllm", ctx.model, None)]  # vllm + a live model, no path: build_backend's HF fallback
    assert trainer.vllm_generation.llm.calls == 0 and trainer.vllm_generation.syncs == 0


@pytest.mark.parametrize("backend", ["vllm", "hf"])
def test_grpo_train_sets_the_eval_backend_for_vllm(backend, tmp_path, monkeypatch):
    from reasoning_rl.algorithms import grpo
    from tests.test_config import compose_resolved

    seen = {}

    class FakeGRPOTrainer:  # TRL's, as far as train() touches it: vllm_generation exists when use_vllm
        def __init__(self, *, args, **kwargs):
            made = fake_trainer()
            self.state, self._last_loaded_step = made.state, made._last_loaded_step
            if args.use_vllm:
                self.vllm_generation = made.vllm_generation

        def train(self, resume_from_checkpoint=None):
            seen["eval_backend"] = ctx.eval_backend  # what the callbacks' evals will sample with
            seen["trainer"] = self

    monkeypatch.setattr(grpo, "GRPOTrainer", FakeGRPOTrainer)
    cfg = compose_resolved("train", [f"generation={backend}"])
    ctx = train_context(tmp_path)
    ctx.cfg, ctx.settings, ctx.train_problems = cfg, JobSettings.from_cfg(cfg), ctx.eval_problems
    grpo.train(ctx)

    if backend == "hf":
        assert seen["eval_backend"] is None  # build_backend: the HF backend over the live model
        return
    sampler = seen["eval_backend"](HFModelNeverSampled())
    assert sampler.llm is seen["trainer"].vllm_generation.llm
