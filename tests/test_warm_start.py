"""`init_from=`: which parents are refused (before any weights load), what is recorded, and the warm
start's KL reference (a frozen copy of the parent's adapter, not the base model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from reasoning_rl import warm_start
from reasoning_rl.errors import ConfigError
from tests.helpers import run_job
from tests.test_ppo_trpo import tiny_batch, tiny_lm

MODEL = {"name_or_path": "smollm2-135m-instruct", "source": "embedded", "revision": None}
LORA = {"name": "lora", "r": 16, "alpha": 32}


def fake_run(folder: Path, *, model=MODEL, algorithm="sft", adapter=True, r=16, init_from=None) -> Path:
    """A train run dir as the train job leaves it, without training: config, provenance, adapter config."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"job_name": "train", "model": model, "algorithm": {"name": algorithm}, "init_from": init_from}))
    (folder / "provenance.json").write_text(json.dumps({"git": {"sha": "abc123"}}))
    if adapter:
        (folder / "adapter").mkdir()
        (folder / "adapter" / "adapter_config.json").write_text(json.dumps(
            {"peft_type": "LORA", "r": r, "lora_alpha": 32, "base_model_name_or_path": "/cache/smollm2-135m-instruct"}))
    return folder


def resolve(path, model=MODEL, peft=LORA):
    return warm_start.resolve_parent(path, OmegaConf.create(model), OmegaConf.create(peft))


def test_a_finished_run_is_resolved_and_recorded(tmp_path):
    parent = resolve(fake_run(tmp_path / "sft", init_from="/runs/base_sft"))
    assert parent.record() == {"adapter": str(tmp_path / "sft" / "adapter"), "run_dir": str(tmp_path / "sft"),
                               "algorithm": "sft", "model": "smollm2-135m-instruct", "git_sha": "abc123",
                               "init_from": "/runs/base_sft"}
    # RUN_DIR/adapter is still that run's adapter.
    assert resolve(tmp_path / "sft" / "adapter").run_dir == str(tmp_path / "sft")


@pytest.mark.parametrize("make, kwargs, message", [
    (lambda p: p / "missing", {}, "no such run dir or adapter"),
    (lambda p: fake_run(p / "r", adapter=False), {}, "has no final adapter/"),
    (lambda p: fake_run(p / "r", model={**MODEL, "name_or_path": "Qwen/Qwen2.5-0.5B-Instruct", "source": "hub"}), {},
     "was trained on model Qwen/Qwen2.5-0.5B-Instruct"),
    (lambda p: fake_run(p / "r", r=8), {}, "the parent's LoRA has r=8"),
    (lambda p: fake_run(p / "r"), {"peft": {"name": "none"}}, "continues a LoRA adapter"),
    (lambda p: p, {}, "neither a run dir"),
])
def test_parents_that_cannot_be_continued_are_refused(tmp_path, make, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        resolve(make(tmp_path), **kwargs)


def test_a_bare_adapter_of_another_model_is_refused(tmp_path):
    adapter = tmp_path / "a"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "gpt2"}))
    with pytest.raises(ConfigError, match="is an adapter of gpt2"):
        resolve(adapter)


def test_the_train_job_refuses_another_base_model_in_one_line_before_loading(tmp_path):
    parent = fake_run(tmp_path / "sft")
    # A model that is not on this machine: had it tried to load, the error would be a missing model.
    result = run_job("train", "algorithm=grpo", "logger=none", "model=qwen2_5_0_5b_instruct", f"init_from={parent}",
                     f"hydra.run.dir={tmp_path / 'child'}", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: init_from={parent} was trained on model")
    assert not (tmp_path / "child" / "status.json").exists()  # refused before the run started


def test_the_reference_adapter_is_the_parent_and_stays_frozen():
    """PPO/TRPO's KL reference after a warm start: a copy of the parent's adapter, not the base model;
    training moves `default` only."""
    from trl.trainer.utils import use_adapter

    from reasoning_rl.algorithms.batch import response_forward

    policy, batch = tiny_lm(), tiny_batch()  # its LoRA B is non-zero: a trained parent
    warm_start.add_reference_adapter(policy)
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all(".default." in n for n in trainable)

    def logits(adapter):
        with torch.no_grad(), use_adapter(policy, adapter):
            return response_forward(policy, batch, 1.0)[0]

    parent_logits, base_logits = logits(warm_start.REFERENCE_ADAPTER), logits(None)
    with torch.no_grad():
        assert torch.equal(response_forward(policy, batch, 1.0)[0], parent_logits)
        assert not torch.allclose(parent_logits, base_logits)
        for name, p in policy.named_parameters():  # a training step moves the policy's adapter
            if ".default." in name and "lora_B" in name:
                p.add_(0.5)
    assert torch.equal(logits(warm_start.REFERENCE_ADAPTER), parent_logits)  # the reference did not move
    assert {n for n, p in policy.named_parameters() if p.requires_grad} == trainable  # use_adapter restored it
