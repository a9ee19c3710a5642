"""Every yaml in conf/ composes (and resolves) with its primary config."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
PRIMARY = sorted(p.stem for p in CONF.glob("*.yaml"))
# conf/pipeline/ holds pipelines (reasoning_rl/pipeline.py), not a group of a job: composed stage by stage below.
GROUP_FILES = sorted(p for p in CONF.rglob("*.yaml") if p.parent != CONF and p.parent.name not in ("hydra", "pipeline"))
PIPELINES = sorted(p.stem for p in (CONF / "pipeline").glob("*.yaml"))


def primary_defaults(name: str) -> set[str]:
    import yaml

    entries = yaml.safe_load((CONF / f"{name}.yaml").read_text()).get("defaults", [])
    return {next(iter(e)) for e in entries if isinstance(e, dict)}


def _picks_training_groups(path: Path) -> bool:
    import yaml

    if any(g in path.read_text() for g in ("/algorithm", "/peft")):
        return True
    bases = [e for e in yaml.safe_load(path.read_text()).get("defaults", []) if isinstance(e, str) and e != "_self_"]
    return any(_picks_training_groups(path.parent / f"{base}.yaml") for base in bases)


def primary_for(group: str, path: Path | None = None) -> str:
    """The primary config that lists the group, else the first one (the group is then added with +).
    Experiment presets that pick an algorithm or a peft setting, themselves or through the presets they
    inherit from, belong to the train job."""
    if group == "experiment" and path is not None and _picks_training_groups(path):
        return "train"
    for name in PRIMARY:
        if group in primary_defaults(name):
            return name
    return PRIMARY[0]


def compose_resolved(config_name: str, overrides: list[str], hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=hydra)
    if hydra:
        return cfg  # hydra's own node holds runtime interpolations that resolve only inside a job
    OmegaConf.resolve(cfg)
    return cfg


@pytest.mark.parametrize("name", PRIMARY)
def test_primary_config_composes(name):
    cfg = compose_resolved(name, [])
    assert cfg.job_name == name
    assert isinstance(cfg.seed, int)


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: str(p.relative_to(CONF)))
def test_every_group_option_composes(path):
    group = str(path.parent.relative_to(CONF))
    if group.startswith("hydra/"):  # Hydra's own groups (launcher, …) always have a default to override
        cfg = compose_resolved("train", [f"{group}={path.stem}"], hydra=True)
        assert cfg.hydra.launcher._target_
        return
    primary = primary_for(group, path)
    prefix = "" if group in primary_defaults(primary) else "+"
    cfg = compose_resolved(primary, [f"{prefix}{group}={path.stem}"])
    assert cfg is not None


@pytest.mark.parametrize("name", PIPELINES)
def test_every_pipeline_stage_composes(name, tmp_path):
    """Each stage's command line, as the pipeline would run it, composes for its job."""
    import yaml

    from reasoning_rl.pipeline import command, load_pipeline

    required = [k for k, v in yaml.safe_load((CONF / "pipeline" / f"{name}.yaml").read_text()).items() if v == "???"]
    root, stages = load_pipeline([f"pipeline={name}", *[f"pipeline.{k}={tmp_path}" for k in required]])
    assert root == tmp_path and stages
    for stage in stages:
        if stage.job == "compare":
            continue
        overrides = command(stage, root, ["debug=smoke"])[3:]
        cfg = compose_resolved(stage.job, overrides)
        assert cfg.job_name == stage.job
        if stage.init_from:
            assert cfg.init_from == str(root / stage.init_from)


def test_hub_models_name_a_hub_id():
    for name in ("qwen2_5_0_5b_instruct", "llama3_2_1b_instruct"):
        cfg = compose_resolved("evaluate", [f"model={name}"])
        assert cfg.model.source == "hub" and "/" in cfg.model.name_or_path


def test_smoke_shrinks_sizes():
    full = compose_resolved("evaluate", [])
    smoke = compose_resolved("evaluate", ["debug=smoke"])
    assert smoke.dataset.limit is not None
    assert smoke.generation.max_new_tokens < full.generation.max_new_tokens


def test_logger_is_offline_wandb_by_default(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the default follows an exported WANDB_MODE
    cfg = compose_resolved("evaluate", [])
    assert cfg.logger.name == "wandb" and cfg.logger.mode == "offline"
