"""peft.*: every LoraConfig field passes through; alpha/dropout are short names; unknown keys are one line."""

import pytest
from omegaconf import OmegaConf

from reasoning_rl import added_keys, models
from reasoning_rl.errors import ConfigError

LORA_YAML = "conf/peft/lora.yaml"


def yaml_cfg(**overrides):
    cfg = OmegaConf.load(LORA_YAML)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


@pytest.fixture
def command_line(monkeypatch):
    """As in a Hydra job whose command line sets these peft.* keys."""
    def given(*keys):
        monkeypatch.setattr(models, "_command_line_keys", lambda: set(keys))
    return given


def test_defaults_from_the_yaml():
    config = models._lora_config(OmegaConf.load(LORA_YAML))
    assert (config.r, config.lora_alpha, config.lora_dropout, config.target_modules) == (16, 32, 0.05, "all-linear")
    assert config.use_dora is False and config.task_type == "CAUSAL_LM"


def test_a_config_of_ones_own_gets_the_yaml_defaults_for_what_it_leaves_out():
    """LoRA's defaults live only in conf/peft/lora.yaml: a peft config that names only r gets the yaml's
    alpha, dropout, targets and bias, whatever they are."""
    yaml = OmegaConf.load(LORA_YAML)
    config = models._lora_config({"name": "lora", "r": 4})
    assert config.r == 4
    assert (config.lora_alpha, config.lora_dropout, config.bias) == (yaml.alpha, yaml.dropout, yaml.bias)
    assert config.target_modules == yaml.target_modules


@pytest.mark.parametrize("overrides, field, value", [
    ({"use_dora": True}, "use_dora", True),
    ({"use_rslora": True}, "use_rslora", True),
    ({"lora_alpha": 64}, "lora_alpha", 64),          # peft's spelling wins over lora.yaml's alpha: 32
    ({"alpha": 8}, "lora_alpha", 8),
    ({"dropout": 0.1}, "lora_dropout", 0.1),
    ({"lora_dropout": 0.2}, "lora_dropout", 0.2),
    ({"layers_to_transform": [0, 1], "target_modules": ["q_proj"]}, "layers_to_transform", [0, 1]),
])
def test_fields_pass_through(command_line, overrides, field, value):
    command_line(*overrides)
    assert getattr(models._lora_config(yaml_cfg(**overrides)), field) == value


def test_a_config_files_peft_spelling_wins_over_lora_yaml(command_line):
    command_line()  # a preset sets lora_alpha: 64; lora.yaml still says alpha: 32
    assert models._lora_config(yaml_cfg(lora_alpha=64)).lora_alpha == 64
    command_line("alpha")  # ... unless the command line says alpha
    assert models._lora_config(yaml_cfg(lora_alpha=64, alpha=8)).lora_alpha == 8


def test_both_on_the_command_line_refused(command_line):
    command_line("alpha", "lora_alpha")
    with pytest.raises(ConfigError, match="peft.alpha=8 and peft.lora_alpha=16 are one setting"):
        models.check_peft_config(yaml_cfg(alpha=8, lora_alpha=16))


def test_short_names_show_the_value_that_applies(command_line):
    # warm_start reads peft_cfg.get('alpha'): after the check it is what lora_alpha set; lora_alpha stays
    # as given (null in lora.yaml), so a run started before peft's spellings existed resumes as it was
    command_line("lora_alpha", "lora_dropout")
    cfg = yaml_cfg(lora_alpha=64, lora_dropout=0.1)
    models.check_peft_config(cfg)
    assert (cfg.alpha, cfg.dropout, cfg.lora_alpha) == (64, 0.1, 64)
    plain = OmegaConf.load(LORA_YAML)
    models.check_peft_config(plain)
    assert (plain.alpha, plain.lora_alpha, plain.lora_dropout) == (32, None, None)


def test_both_spellings_refused():
    with pytest.raises(ConfigError, match=r"peft.alpha=16 and peft.lora_alpha=8 are one setting"):
        models.check_peft_config({"name": "lora", "alpha": 16, "lora_alpha": 8})
    with pytest.raises(ConfigError, match="peft.dropout=0.1 and peft.lora_dropout=0.2"):
        models.check_peft_config({"name": "lora", "dropout": 0.1, "lora_dropout": 0.2})
    models.check_peft_config({"name": "lora", "alpha": 16, "lora_alpha": 16})  # the same value is no conflict


@pytest.mark.parametrize("key, near", [("use_dorra", "use_dora"), ("lora_alpa", "lora_alpha"), ("rank", "r"),
                                       ("alpah", "alpha")])
def test_unknown_key_names_nearest_field(key, near):
    with pytest.raises(ConfigError, match=rf"peft.{key} is not a LoRA setting \(did you mean peft.{near}\?\)") as err:
        models.check_peft_config({"name": "lora", key: 1})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("settings, message", [
    ({"lora_alpha": -1}, "peft.lora_alpha must be a number > 0"),
    ({"alpha": -1}, "peft.alpha must be a number > 0"),
    ({"lora_dropout": 1.5}, r"peft.lora_dropout must be in \[0, 1\)"),
    ({"use_dora": "maybe"}, "peft.use_dora must be true or false"),
])
def test_values_checked(settings, message):
    with pytest.raises(ConfigError, match=message):
        models.check_peft_config({"name": "lora", **settings})


def test_none_ignores_lora_fields():
    models.check_peft_config({"name": "none"})


def test_added_peft_key_is_not_refused_as_unread():
    config = {"peft": {"name": "lora", "r": 16}, "eval": {"num_samples": 1}}
    added_keys.check_added_keys(["+peft.use_dora=true"], [], config)
    with pytest.raises(ConfigError, match=r"\+eval.num_sample"):
        added_keys.check_added_keys(["+eval.num_sample=3"], [], config)


@pytest.mark.parametrize("overrides, message", [
    (["peft.alpha=16", "peft.lora_alpha=8"], "peft.alpha=16 and peft.lora_alpha=8 are one setting"),
    (["+peft.use_dorra=true"], "peft.use_dorra is not a LoRA setting (did you mean peft.use_dora?)"),
])
def test_train_job_refuses_before_loading(overrides, message, tmp_path):
    from tests.helpers import run_job

    result = run_job("train", "debug=smoke", *overrides, f"hydra.run.dir={tmp_path}/run", timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and message in result.stderr, result.stderr[-2000:]


def test_a_run_checkpointed_before_peft_spellings_resumes(tmp_path):
    from reasoning_rl.checkpointing import check_resumable

    before = {"peft": {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear",
                       "bias": "none"}, "seed": 0}
    check_resumable(tmp_path, before)
    now = OmegaConf.load(LORA_YAML)
    models.check_peft_config(now)
    check_resumable(tmp_path, {"peft": OmegaConf.to_container(now, resolve=True), "seed": 0})
    now.alpha = 64
    with pytest.raises(ConfigError, match="peft.alpha"):
        check_resumable(tmp_path, {"peft": OmegaConf.to_container(now, resolve=True), "seed": 0})
