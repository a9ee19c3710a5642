"""`init_from=RUN_DIR|ADAPTER`: start training from another run's LoRA adapter.

The warm start continues training the parent's adapter rather than merging it into the base and
adding a fresh one. The trained adapter alone is then the whole policy: evaluate, compare, export
and the next warm start read one adapter and never need the chain of parents. The KL reference
stays the parent's policy, not the base model: TRL's GRPO keeps a frozen copy of a loaded adapter
as its "ref" adapter, and PPO/TRPO do the same (`add_reference_adapter`).

Everything here that can refuse a parent runs before any weights load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from reasoning_rl.errors import ConfigError

REFERENCE_ADAPTER = "ref"  # the name TRL's GRPOTrainer gives its frozen copy of a loaded adapter


@dataclass(frozen=True)
class Parent:
    adapter: str  # the adapter dir that is loaded
    run_dir: str | None  # the run that trained it, when init_from names a run dir
    algorithm: str | None
    model: str | None  # the parent's model.name_or_path (run dir) or the adapter's base model
    git_sha: str | None
    init_from: str | None  # the parent's own parent: the chain reproduce follows

    def record(self) -> dict[str, Any]:
        return asdict(self)


def _read(path: Path, loader) -> Any:
    try:
        return loader(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None


def _same_model(parent_model: dict, model_cfg: Any) -> bool:
    keys = ("name_or_path", "source", "revision")
    return all(str(parent_model.get(k) or "") == str(model_cfg.get(k) or "") for k in keys)


def _model_text(model: Any) -> str:
    text = str(model.get("name_or_path"))
    return text + (f"@{model.get('revision')}" if model.get("revision") else "")


def resolve_parent(init_from: str | Path, model_cfg: Any, peft_cfg: Any) -> Parent:
    """The parent of a warm start, checked against this run's model and peft settings."""
    path = Path(str(init_from)).expanduser().absolute()
    if not path.exists():
        raise ConfigError(f"init_from={init_from}: no such run dir or adapter")
    if (path / "adapter_config.json").is_file():
        adapter, run_dir = path, None
        if (path.parent / ".hydra" / "config.yaml").is_file():  # RUN_DIR/adapter: still a run's adapter
            run_dir = path.parent
    elif (path / ".hydra" / "config.yaml").is_file():
        run_dir, adapter = path, path / "adapter"
        if not (adapter / "adapter_config.json").is_file():
            status = (_read(path / "status.json", json.loads) or {}).get("status", "unknown")
            raise ConfigError(f"init_from={init_from}: the run has no final adapter/ (status: {status}); "
                              "warm-start from a finished train run")
    else:
        raise ConfigError(f"init_from={init_from}: neither a run dir (.hydra/config.yaml) nor an adapter "
                          "dir (adapter_config.json)")
    adapter_config = _read(adapter / "adapter_config.json", json.loads) or {}
    config = (_read(run_dir / ".hydra" / "config.yaml", yaml.safe_load) or {}) if run_dir else {}
    provenance = (_read(run_dir / "provenance.json", json.loads) or {}) if run_dir else {}

    if config.get("model"):  # the run says exactly which model it trained
        if not _same_model(config["model"], model_cfg):
            raise ConfigError(f"init_from={init_from} was trained on model {_model_text(config['model'])}, "
                              f"this run's model is {_model_text(model_cfg)}; warm-start from a run of the same model")
        model = str(config["model"].get("name_or_path"))
    else:  # a bare adapter: its config names the base by path or hub id
        model = str(adapter_config.get("base_model_name_or_path") or "")
        if model and Path(model).name != Path(str(model_cfg.get("name_or_path"))).name:
            raise ConfigError(f"init_from={init_from} is an adapter of {model}, this run's model is "
                              f"{_model_text(model_cfg)}; warm-start from an adapter of the same model")
    _check_peft(init_from, adapter_config, peft_cfg)
    return Parent(
        adapter=str(adapter), run_dir=str(run_dir) if run_dir else None,
        algorithm=(config.get("algorithm") or {}).get("name"), model=model or None,
        git_sha=(provenance.get("git") or {}).get("sha"), init_from=config.get("init_from"),
    )


def _check_peft(init_from: Any, adapter_config: dict, peft_cfg: Any) -> None:
    """The adapter is continued as it is: a peft setting that contradicts it would be silently ignored."""
    if str(peft_cfg.get("name") or "none") != "lora":
        raise ConfigError(f"init_from={init_from} continues a LoRA adapter; peft={peft_cfg.get('name')} "
                          "cannot (use peft=lora)")
    if adapter_config.get("peft_type", "LORA") != "LORA":
        raise ConfigError(f"init_from={init_from} holds a {adapter_config.get('peft_type')} adapter, not LoRA")
    for ours, theirs in (("r", "r"), ("alpha", "lora_alpha")):
        mine, parents = peft_cfg.get(ours), adapter_config.get(theirs)
        if mine is not None and parents is not None and float(mine) != float(parents):
            raise ConfigError(f"init_from={init_from}: the parent's LoRA has {ours}={parents}, this run asks "
                              f"peft.{ours}={mine}; a warm start continues the parent's adapter as it is")


def load_trainable(model, parent: Parent):
    """The base model with the parent's adapter, its weights trainable."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, parent.adapter, is_trainable=True)


def add_reference_adapter(policy) -> None:
    """A frozen copy of the policy's adapter as it is now: the KL reference of a warm start."""
    policy.add_adapter(REFERENCE_ADAPTER, policy.peft_config["default"])
    for name, param in policy.named_parameters():
        if f".{REFERENCE_ADAPTER}." in name:
            param.requires_grad_(False)
            param.data.copy_(policy.get_parameter(name.replace(f".{REFERENCE_ADAPTER}.", ".default.")).data)
