"""The comparison as tables: one row per run (terminal text, Markdown, CSV) and the differences
against the baseline."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reasoning_rl.comparison.runs import Run
from reasoning_rl.comparison.stats import Difference

MISSING = "-"
# Keys that differ without changing what a run computes: where it logs, how often it checkpoints.
NOISE_PREFIXES = ("logger.", "checkpoint.")
_MAX_CELL = 40
# Keys shown in a column of their own: job_name as `job`, init_from (a warm start's parent) as `from`.
OWN_COLUMN = ("job_name", "init_from")


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def differing_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Config keys that tell the runs apart.

    A key counts when two runs that have it disagree. A key only some runs have counts only if it
    names a choice (`algorithm.name`, `peft.name`): an evaluate run has no `algorithm.args.*`, and
    listing every one of them would bury the keys that matter.
    """
    configs = [c for c in configs if c]  # a sweep member that never started has no config to compare
    order: dict[str, None] = {}
    for config in configs:
        order.update(dict.fromkeys(config))
    keys = []
    for key in order:
        if key in OWN_COLUMN or key.startswith(NOISE_PREFIXES):
            continue
        values = [_key(c[key]) for c in configs if key in c]
        missing_somewhere = len(values) < len(configs)
        if len(set(values)) > 1 or (missing_somewhere and key.rsplit(".", 1)[-1] == "name"):
            keys.append(key)
    return keys


def format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _short(text: str, limit: int = _MAX_CELL) -> str:
    text = " ".join(text.split())  # multi-line prompts on one line
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def interval(stat: Mapping[str, float] | None) -> str:
    if not stat:
        return MISSING
    return f"{stat['mean']:.3f} [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]"


def eval_set(run: Run) -> str:
    """The problems the metrics are on: a train run evaluates on eval.split, not its training split."""
    n = next((s["n"] for s in run.summary.values() if "n" in s), None)
    if n is None:
        return MISSING
    split_key = "eval.split" if run.job == "train" else "dataset.split"
    return f"{run.config.get('dataset.name', '?')}/{run.config.get(split_key, '?')} n={n}"


def run_rows(runs: Sequence[Run], keys: Sequence[str], metrics: Sequence[str],
             parents: Mapping[str, str | None] | None = None) -> tuple[list[str], list[list[str]]]:
    """parents: run name -> the `from` cell (lineage.parent_label); the column shows only when a run has one."""
    lineage = parents if parents and any(parents.values()) else None
    header = ["run", "job", *(["from"] if lineage else []), "status", "eval set", *keys, *metrics]
    rows = [
        [run.name, run.job, *([lineage.get(run.name) or MISSING] if lineage else []), run.status, eval_set(run),
         *(_short(format_value(run.config[k])) if k in run.config else MISSING for k in keys),
         *(interval(run.summary.get(m)) for m in metrics)]
        for run in runs
    ]
    return header, rows


def diff_rows(baseline: Run, diffs: Mapping[str, Sequence[Difference]]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "metric", baseline.name, "run", "difference", "95% CI", "p", "test"]
    rows = []
    for name, run_diffs in diffs.items():
        for d in run_diffs:
            test = f"paired, n={d.n}" if d.paired else f"unpaired, n={d.n_baseline} vs {d.n}"
            rows.append([name, d.metric, f"{d.baseline:.3f}", f"{d.value:.3f}", f"{d.diff:+.3f}",
                         f"[{d.ci_low:+.3f}, {d.ci_high:+.3f}]", f"{d.p_value:.3g}", test])
    return header, rows


def render_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows])


def render_markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def write_runs_csv(path: Path, runs: Sequence[Run], keys: Sequence[str], metrics: Sequence[str],
                   parents: Mapping[str, str | None] | None = None) -> Path:
    """Numbers as numbers: mean, ci_low, ci_high and n of each metric in their own columns."""
    parents = parents or {}
    stat_columns = [f"{m}{suffix}" for m in metrics for suffix in ("", "_ci_low", "_ci_high", "_n")]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "path", "job", "from", "status", "eval_set", *keys, *stat_columns, "error"])
        for run in runs:
            stats = []
            for m in metrics:
                s = run.summary.get(m)
                stats += [s["mean"], s["ci_low"], s["ci_high"], s["n"]] if s else ["", "", "", ""]
            writer.writerow([run.name, str(run.path), run.job, parents.get(run.name) or "", run.status, eval_set(run),
                             *(format_value(run.config[k]) if k in run.config else "" for k in keys),
                             *stats, (run.error or "").splitlines()[0] if run.error else ""])
    return path


def write_diffs_csv(path: Path, baseline: Run, diffs: Mapping[str, Sequence[Difference]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["baseline", "run", "metric", "baseline_mean", "run_mean", "diff", "ci_low", "ci_high",
                         "p_value", "paired", "n_baseline", "n"])
        for name, run_diffs in diffs.items():
            for d in run_diffs:
                writer.writerow([baseline.name, name, d.metric, d.baseline, d.value, d.diff, d.ci_low, d.ci_high,
                                 d.p_value, d.paired, d.n_baseline, d.n])
    return path
