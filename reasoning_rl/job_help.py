"""`--help` of a job lists only the config groups and presets that job takes (Hydra's own list is every
group under conf/, so the evaluate job would offer algorithm=, hparams=, peft= and the train presets).

conf/<job>.yaml's help template calls `${job_groups:<job>}`; the resolver is registered on import of the
job's entry module (reasoning_rl/train.py, reasoning_rl/evaluate.py).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"


def _defaults(node) -> list:
    return list(node.get("defaults") or []) if isinstance(node, DictConfig) else []


def _entry_group(entry) -> tuple[str | None, str | None]:
    """(group, option) of one defaults-list entry; (None, name) for a config of the same group."""
    if isinstance(entry, str):
        return (None, entry) if entry != "_self_" else (None, None)
    if isinstance(entry, (dict, DictConfig)):
        (key, value), = dict(entry).items()
        key = key.removeprefix("override ").removeprefix("optional ").lstrip("/").split("@", 1)[0]
        return key, value
    return None, None


def job_groups(job: str) -> set[str]:
    """The groups conf/<job>.yaml's defaults list names (a `group=option` override needs its group there)."""
    primary = OmegaConf.load(CONF / f"{job}.yaml")
    return {g for g, _ in map(_entry_group, _defaults(primary)) if g and g != "hydra" and "/" not in g}


def _overrides(group: str, option: str, seen: frozenset = frozenset()) -> set[str]:
    """The groups a preset's defaults list overrides (`override /algorithm: grpo`), its own included
    presets followed (demo -> learn_grpo -> _learn)."""
    path = CONF / group / f"{option}.yaml"
    if not path.exists() or option in seen:
        return set()
    node = OmegaConf.load(path)
    groups: set[str] = set()
    for entry in _defaults(node):
        other, name = _entry_group(entry)
        if other is None and name:
            groups |= _overrides(group, name, seen | {option})
        elif other:
            groups.add(other.split("/", 1)[0])
    return groups


def fits(job: str, group: str, option: str) -> bool:
    """The option composes into the job's config: it overrides no group the job lacks (evaluate has no
    algorithm, hparams, peft or sweep; Hydra would refuse `experiment=learn_grpo` there)."""
    return _overrides(group, option) <= job_groups(job) | {"hydra"}


def groups_help(job: str) -> str:
    """`group: option, option` lines for the job's groups, like Hydra's $APP_CONFIG_GROUPS."""
    lines = []
    for group in sorted(job_groups(job)):
        options = sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))
        options = [o for o in options if fits(job, group, o)]
        if options:
            lines.append(f"{group}: {', '.join(options)}")
    return "\n".join(lines) + "\n"


def register() -> None:
    if not OmegaConf.has_resolver("job_groups"):
        OmegaConf.register_new_resolver("job_groups", groups_help)


__all__ = ["fits", "groups_help", "register"]
