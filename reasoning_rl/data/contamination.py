"""Refuse to evaluate on problems the model trains on.

Problems are compared by their upstream id (`meta["source_id"]`: an AI2 ARC question id, an ARC-AGI
task id; the problem id otherwise), so the overlap is found across data sets too: ARC-AGI-2 training
holds 376 ARC-AGI-1 evaluation tasks under the same ids.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from reasoning_rl.data.base import Problem
from reasoning_rl.errors import ConfigError

log = logging.getLogger(__name__)


def source_ids(problems: Sequence[Problem]) -> set[str]:
    return {str(p.meta.get("source_id", p.id)) for p in problems}


def check_contamination(train: Sequence[Problem], evaluation: Sequence[Problem], *, allow: bool,
                        override: str = "dataset.allow_contamination=true") -> set[str]:
    """The shared ids; a ConfigError when there are any, unless `allow`, then a loud warning."""
    shared = source_ids(train) & source_ids(evaluation)
    if not shared:
        return shared
    examples = ", ".join(sorted(shared)[:5])
    message = (f"{len(shared)} of the {len(source_ids(evaluation))} evaluation problems/tasks are also in the "
               f"training data (same ids: {examples}{', …' if len(shared) > 5 else ''}); the eval would "
               f"measure memorisation")
    if not allow:
        raise ConfigError(f"{message}. Evaluate on other data, or set {override} to run anyway")
    log.warning("CONTAMINATED EVALUATION: %s (allowed by %s)", message, override)
    return shared
