"""Which run continues which: a train run warm-started with `init_from` records its parent twice, in
`.hydra/config.yaml` (`init_from`, as the user wrote it) and in `provenance.json` (`parent`, absolute
paths). Runs older than warm starts have neither; they are roots.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reasoning_rl.comparison.runs import Run


def parent_paths(run: Run) -> list[Path]:
    """Where the parent lies, the most reliable first: provenance's absolute run dir and adapter, then
    the config's init_from (possibly relative to where that run was started)."""
    recorded = run.parent or {}
    values = (recorded.get("run_dir"), recorded.get("adapter"), run.config.get("init_from"))
    return [Path(v).expanduser() for v in values if isinstance(v, str) and v]


def _within(path: Path, run_dir: Path) -> bool:
    """The parent path is the run dir itself or an adapter inside it (adapter/, checkpoints/step-N)."""
    try:
        path = path.resolve()
    except OSError:
        return False
    return path == run_dir or run_dir in path.parents


def find_parent(run: Run, runs: Sequence[Run]) -> Run | None:
    """The compared run this one was warm-started from, if it is among them."""
    for path in parent_paths(run):
        for other in runs:
            if other is not run and _within(path, other.path.resolve()):
                return other
    return None


def parent_label(run: Run, runs: Sequence[Run]) -> str | None:
    """The `from` column: the parent's table name, else the tail of its path; None for a fresh start."""
    paths = parent_paths(run)
    if not paths:
        return None
    parent = find_parent(run, runs)
    return parent.name if parent else "/".join(paths[0].parts[-2:])


def chains(runs: Sequence[Run]) -> list[list[str]]:
    """One chain per warm-started run that no compared run continues, root first: the base model (or
    the parent outside the comparison), then each run. `lineage: model → sft → grpo`."""
    continued = {id(p) for r in runs if (p := find_parent(r, runs))}
    out = []
    for leaf in runs:
        if id(leaf) in continued or not parent_paths(leaf):
            continue
        chain, run, seen = [leaf.name], leaf, {id(leaf)}
        while (parent := find_parent(run, runs)) is not None and id(parent) not in seen:
            chain.insert(0, parent.name)
            seen.add(id(parent))
            run = parent
        if find_parent(run, runs) is None:  # else a cycle: it has no root to add
            root = parent_label(run, runs) or run.config.get("model.name_or_path")
            if root:
                chain.insert(0, str(root))
        out.append(chain)
    return out
