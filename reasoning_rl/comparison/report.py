"""A comparison of runs, built once and written as text, Markdown, CSV and PNG."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reasoning_rl.comparison import boundary, lineage, passk, table
from reasoning_rl.comparison.runs import Run, find_run
from reasoning_rl.comparison.stats import Difference, compare_scores, problem_scores
from reasoning_rl.errors import UserError
from reasoning_rl.tracking.plots import plot_compare_curves, plot_metric_bars, plot_train_curves, train_points


@dataclass
class Comparison:
    runs: list[Run]
    baseline: Run | None
    keys: list[str]  # config keys that differ between runs
    metrics: list[str]  # table columns
    curve_metrics: list[str]  # pass@K and maj@K for the largest K
    diffs: dict[str, list[Difference]] = field(default_factory=dict)  # run name -> vs the baseline
    warnings: list[str] = field(default_factory=list)
    boundaries: list[boundary.Boundary] = field(default_factory=list)  # each run's solved problems vs the baseline
    parents: dict[str, str | None] = field(default_factory=dict)  # run name -> the `from` cell
    chains: list[list[str]] = field(default_factory=list)  # lineage, root first

    def run_table(self) -> tuple[list[str], list[list[str]]]:
        return table.run_rows(self.runs, self.keys, self.metrics, self.parents)


def choose_metrics(runs: Sequence[Run], requested: Sequence[str] | None, warnings: list[str]) -> list[str]:
    """The metrics of the table: those every finished run has (or the requested ones), with a warning
    naming what is missing where."""
    finished = [r for r in runs if r.summary]
    if not finished:
        warnings.append("no run has a summary.json (none finished): the table shows their status only")
        return list(requested or [])
    union = list(dict.fromkeys(m for r in finished for m in r.summary))
    if requested:
        unknown = [m for m in requested if m not in union]
        if len(unknown) == len(requested):
            raise UserError(f"--metrics {' '.join(requested)}: no run has them; the runs have {', '.join(union)}")
        chosen = list(requested)
    else:
        chosen = [m for m in union if all(m in r.summary for r in finished)]
    for run in finished:
        lacking = [m for m in (chosen if requested else union) if m not in run.summary]
        if lacking:
            warnings.append(f"{run.name} has no {', '.join(lacking)}" + (" (shown as '-')" if requested else ""))
    left_out = [m for m in union if m not in chosen]
    if left_out and not requested:
        warnings.append(f"metrics not in every finished run are left out of the table: {', '.join(left_out)} "
                        f"(show them with --metrics)")
    return chosen


def _largest_k(names) -> int | None:
    ks = [int(m.group(1)) for name in names if (m := re.fullmatch(r"(?:eval/)?pass@(\d+)", name))]
    return max(ks, default=None)


def choose_curve_metrics(runs: Sequence[Run]) -> list[str]:
    """pass@K and maj@K (pass@8 and maj@8 with the default eval.ks) for the largest K most runs report."""
    largest = [k for r in runs if (k := _largest_k([*r.summary, *(key for row in r.rows for key in row)]))]
    if not largest:
        return []
    k = max(set(largest), key=lambda k: (largest.count(k), k))
    return [f"pass@{k}", f"maj@{k}"] if k > 1 else [f"pass@{k}"]


# Training curves worth comparing across algorithms, when a run logged them (GRPO via TRL, PPO, TRPO).
TRAIN_CURVES = ("train/reward", "train/kl", "train/completions/mean_length")


def choose_train_curves(runs: Sequence[Run]) -> list[str]:
    return [key for key in TRAIN_CURVES if any(train_points(r.rows, key) for r in runs)]


def _scores(run: Run) -> dict[str, dict[str, float]]:
    ks = run.config.get("eval.ks") or [int(m.group(1)) for name in run.summary
                                        if (m := re.fullmatch(r"pass@(\d+)", name))]
    return problem_scores(run.samples, ks, run.config.get("eval.estimator") or "subsets")


def paired_differences(runs: Sequence[Run], baseline: Run, metrics: Sequence[str] | None, warnings: list[str],
                       n_resamples: int, seed: int) -> dict[str, list[Difference]]:
    """Each run against the baseline, on the given metrics or else every metric the two share."""
    base = _scores(baseline)
    diffs = {}
    for run in runs:
        if run is baseline:
            continue
        if not run.has_samples:
            warnings.append(f"{run.name} ({run.status}) has no samples.jsonl: not compared with the baseline")
            continue
        scores = _scores(run)
        base_ids, ids = set(next(iter(base.values()), {})), set(next(iter(scores.values()), {}))
        if base_ids != ids:
            warnings.append(f"{run.name} and the baseline {baseline.name} were evaluated on different problems "
                            f"({len(ids)} and {len(base_ids)}, {len(ids & base_ids)} in common): unpaired comparison "
                            f"(independent bootstrap), which is wider and does not cancel problem difficulty")
        diffs[run.name] = compare_scores(base, scores, metrics or list(base), n_resamples=n_resamples, seed=seed)
    return diffs


def build(runs: list[Run], *, baseline: str | None = None, metrics: Sequence[str] | None = None,
          n_resamples: int = 10000, seed: int = 0) -> Comparison:
    warnings: list[str] = []
    chosen = choose_metrics(runs, metrics, warnings)
    comparison = Comparison(runs=runs, baseline=None, keys=table.differing_keys([r.config for r in runs]),
                            metrics=chosen, curve_metrics=choose_curve_metrics(runs), warnings=warnings,
                            parents={r.name: lineage.parent_label(r, runs) for r in runs}, chains=lineage.chains(runs))
    for run in runs:
        if run.status != "completed":
            warnings.append(f"{run.name}: {run.status}" + (f" ({run.error.splitlines()[0][:200]})" if run.error else "")
                            + ("" if run.summary else ", no final metrics"))
    base = find_run(runs, baseline) if baseline else runs[0]
    if not base.has_samples:
        message = f"the baseline {base.name} ({base.status}) has no samples.jsonl"
        if baseline:
            raise UserError(f"{message}; choose a finished run with --baseline")
        warnings.append(f"{message}: no paired comparison (choose a finished run with --baseline)")
    elif len(runs) > 1:
        comparison.baseline = base
        comparison.diffs = paired_differences(runs, base, metrics, warnings, n_resamples, seed)
        comparison.boundaries = boundary.boundary_rows(runs, base)
    return comparison


def lineage_lines(c: Comparison) -> list[str]:
    return [f"lineage: {' → '.join(chain)}" for chain in c.chains]


def terminal_text(c: Comparison) -> str:
    parts = [table.render_text(*c.run_table())]
    if c.chains:
        parts += ["", *lineage_lines(c)]
    if c.baseline is not None and c.diffs:
        parts.append(f"\ndifference from the baseline {c.baseline.name} (bootstrap 95% CI, two-sided p):")
        parts.append(table.render_text(*table.diff_rows(c.baseline, c.diffs)))
    if c.baseline is not None and c.boundaries:
        parts.append(f"\nreasoning boundary vs the baseline {c.baseline.name} "
                     "(solved@N: at least one of N samples correct):")
        parts.append(table.render_text(*boundary.table_rows(c.baseline, c.boundaries)))
    return "\n".join(parts)


def write(c: Comparison, out_dir: Path, command: str = "") -> dict[str, Path]:
    """compare.md, compare.csv, compare_paired.csv, compare_boundary.csv, compare_curves.png, compare_train.png,
    compare_bars.png, compare_passk.png, plots.json."""
    pngs = ("compare_curves.png", "compare_train.png", "compare_bars.png", "compare_passk.png")
    names = ("compare.md", "compare.csv", "compare_paired.csv", "compare_boundary.csv", *pngs, "plots.json")
    files = {name: out_dir / name for name in names}
    for name in (*pngs, "compare_boundary.csv"):  # from an earlier comparison into the same dir
        files[name].unlink(missing_ok=True)
    table.write_runs_csv(files["compare.csv"], c.runs, c.keys, c.metrics, c.parents)
    table.write_diffs_csv(files["compare_paired.csv"], c.baseline or c.runs[0], c.diffs)
    if c.baseline is not None and c.boundaries:
        boundary.write_csv(files["compare_boundary.csv"], c.baseline, c.boundaries)
    summaries = [(r.name, r.summary) for r in c.runs]
    plotted = {
        "curves": plot_compare_curves([(r.name, r.rows, r.job == "evaluate") for r in c.runs],
                                      c.curve_metrics, files["compare_curves.png"]) if c.curve_metrics else {},
        "train": plot_train_curves([(r.name, r.rows) for r in c.runs], train_keys, files["compare_train.png"])
        if (train_keys := choose_train_curves(c.runs)) else {},
        # every run, so each keeps its color from the curves; one without a summary gets no bars
        "bars": plot_metric_bars([(r.name, r.summary) for r in c.runs],
                                 c.metrics, files["compare_bars.png"]) if c.metrics else {},
        "passk": passk.plot_passk(summaries, files["compare_passk.png"]) if passk.has_curve(summaries) else {},
    }
    files["plots.json"].write_text(json.dumps(plotted, indent=2) + "\n")
    for name in (*pngs, "compare_boundary.csv"):
        if not files[name].exists():
            del files[name]
    files["compare.md"].write_text(markdown(c, command, files))
    return files



def _section(heading: str, rows, note: str) -> list[str]:
    """A markdown section: heading, table (header, rows), and what its numbers mean."""
    return [f"## {heading}", "", table.render_markdown(*rows), "", note, ""]


def markdown(c: Comparison, command: str, files: dict[str, Path]) -> str:
    lines = ["# Run comparison", ""]
    if command:
        lines += ["```bash", command, "```", ""]
    lines += [table.render_markdown(*c.run_table()), "",
              "Metrics: mean [95 % bootstrap CI over problems], from each run's summary.json.", ""]
    if c.chains:
        lines += [*(f"- {line}" for line in lineage_lines(c)), "",
                  "`from`: the run a warm start continued (`init_from`), by table name when compared here.", ""]
    if c.baseline is not None and c.diffs:
        lines += _section(f"Difference from the baseline `{c.baseline.name}`", table.diff_rows(c.baseline, c.diffs),
                          "Difference = run − baseline, recomputed per problem from samples.jsonl; paired bootstrap "
                          "over problems when both runs scored the same problem ids (else independent bootstraps); "
                          "two-sided p-value from the bootstrap distribution shifted to zero difference.")
    if c.baseline is not None and c.boundaries:
        lines += _section(f"Reasoning boundary (vs the baseline `{c.baseline.name}`)",
                          boundary.table_rows(c.baseline, c.boundaries),
                          "solved@N: problems with at least one correct answer among the N samples (pass@N = 1); "
                          "gained: solved by the run and not by the baseline, lost: the reverse (all ids in "
                          "compare_boundary.csv). Distinct answers: different extracted answers per problem, "
                          "unparsable ones not counted.")
    if c.warnings:
        lines += ["## Warnings", "", *(f"- {w}" for w in c.warnings), ""]
    lines += ["## Runs", "", *(f"- `{r.name}`: {r.path}" for r in c.runs), ""]
    for name, label in (("compare_curves.png", "eval curves"), ("compare_train.png", "training curves"),
                        ("compare_bars.png", "final metrics"), ("compare_passk.png", "pass@K against K")):
        if name in files:
            lines += [f"![{label}]({name})", ""]
    return "\n".join(lines)
