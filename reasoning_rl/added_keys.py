"""A key added with `+` must be one the job reads: `+eval.num_sample=16` (for eval.num_samples) would
otherwise change nothing and say nothing.

A `+key` is accepted when the key is one of ADDABLE (read when present, set by no config file), or lies
under a PASSTHROUGH node, whose keys a library checks itself. `++key=…` adds a key unchecked, for
whoever means it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping

from reasoning_rl.errors import ConfigError

# Read with a default where present; no config file sets them.
ADDABLE = {
    "dataset.allow_contamination",  # train_job: a training set that shares problems with the eval set
}
# Nodes handed whole to a library that refuses keys it doesn't know.
PASSTHROUGH = (
    "algorithm.args.",        # TRL's GRPOConfig / SFTConfig / ORPOConfig
    "dataset.task_config.",   # the reasoning-gym task's own config dataclass
    "peft.",                  # peft's LoraConfig (models.check_peft_config names the nearest field)
    "hydra.",                 # Hydra's own settings
)


def _paths(node: Mapping, prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        yield f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _paths(value, f"{prefix}{key}.")


def _nearest(key: str, known: list[str]) -> list[str]:
    """A sibling with a similar name (eval.num_sample -> eval.num_samples), else a similar path elsewhere."""
    parent, _, leaf = key.rpartition(".")
    siblings = [p.rpartition(".")[2] for p in known if p.rpartition(".")[0] == parent]
    near = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
    if near:
        return [f"{parent}.{near[0]}" if parent else near[0]]
    return difflib.get_close_matches(key, known, n=1, cutoff=0.85)


def check_added_keys(overrides: Iterable[str], groups: Iterable[str], config: Mapping) -> None:
    """overrides: the job's command-line overrides; groups: the config groups chosen (`dataset`,
    `dataset@eval.dataset`, ...), whose `+group=option` adds a whole config, not a key."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    groups = set(groups)
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if not override.is_add() or override.is_force_add() or key in groups or "@" in key:
            continue
        if key in ADDABLE or key.startswith(PASSTHROUGH):
            continue
        near = _nearest(key, [p for p in _paths(config) if p != key and not p.startswith(f"{key}.")])
        raise ConfigError(f"+{key}: no part of the job reads it"
                          f"{f' (did you mean {near[0]}?)' if near else ''}; "
                          f"remove it, or write ++{key}=… to add it anyway")
