"""docs/learning.md's figures and tables, from the learn_* run dirs (and the bare-TRL reference).

    python -m bench.learning_report NAME=RUN_DIR [NAME=RUN_DIR …] --baseline-name bare_trl_grpo \
        --img docs/img --out docs/results/learning_table.md

Per run: train reward, KL and eval pass@1 / maj@8 / majority_correct@8 (95 % CI bands) against
wall-clock seconds since the job started; one figure per run (learning_<name>.png) and one overlay
(learning_overlay.png). The table gives first → last eval with CIs, the paired difference against
step 0 (bootstrap p), the wall time and the seconds to reach pass@1 >= 0.8.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from reasoning_rl.comparison.learning import learning_differences
from reasoning_rl.tracking.plots import eval_points
from reasoning_rl.tracking.run_dir import read_jsonl

EVAL_METRICS = ["pass@1", "maj@8", "majority_correct@8"]
TRAIN_KEYS = [("train/reward", "train reward"), ("train/kl", "KL to the reference")]


def started_at(run_dir: Path) -> float:
    provenance = json.loads((run_dir / "provenance.json").read_text())
    if "started" in provenance:  # bench/grpo_bare_learn.py
        return float(provenance["started"])
    return datetime.strptime(provenance["started_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp()


def series(rows, start: float, key: str):
    """(seconds, value) of a train key, or (seconds, mean, low, high) of an eval metric."""
    times = {}
    for row in rows:
        times[row["step"]] = row["time"] - start
    if key.startswith("train/"):
        return [(r["time"] - start, r[key]) for r in rows if r.get(key) is not None]
    metric = key.removeprefix("eval/")
    out = []
    for row in rows:
        if row.get(f"eval/{metric}") is not None:
            out.append((row["time"] - start, row[f"eval/{metric}"], row[f"eval/{metric}_ci_low"],
                        row[f"eval/{metric}_ci_high"]))
    return out


def plot_run(name: str, rows, start: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for metric in EVAL_METRICS:
        points = series(rows, start, f"eval/{metric}")
        if points:
            t, m, lo, hi = zip(*points)
            (line,) = axes[0].plot(t, m, marker="o", label=metric)
            axes[0].fill_between(t, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    axes[0].set_title("held-out eval (95% CI)", fontsize=9)
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8)
    for ax, (key, label) in zip(axes[1:], TRAIN_KEYS):
        points = series(rows, start, key)
        if points:
            ax.plot(*zip(*points), marker=".", linewidth=1)
        else:
            ax.text(0.5, 0.5, "not logged (beta / kl_coef = 0)" if "kl" in key else "not logged",
                    ha="center", va="center", transform=ax.transAxes, fontsize=8)
        ax.set_title(label, fontsize=9)
    for ax in axes:
        ax.set_xlabel("wall-clock seconds (2 CPU cores)")
        ax.grid(alpha=0.3)
    fig.suptitle(name, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_overlay(runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
    for name, (rows, start) in runs.items():
        for ax, metric in zip(axes, EVAL_METRICS):
            points = series(rows, start, f"eval/{metric}")
            if points:
                t, m, lo, hi = zip(*points)
                (line,) = ax.plot(t, m, marker="o", label=name, linestyle="--" if "bare" in name else "-")
                ax.fill_between(t, lo, hi, color=line.get_color(), alpha=0.12, linewidth=0)
    for ax, metric in zip(axes, EVAL_METRICS):
        ax.set_title(f"held-out {metric} (95% CI)", fontsize=9)
        ax.set_xlabel("wall-clock seconds (2 CPU cores)")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt(m, lo, hi) -> str:
    return f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


def table(runs: dict) -> str:
    lines = ["| run | metric | step 0 | last eval (step) | paired diff [95% CI] | p | wall s | s to pass@1 ≥ 0.8 |",
             "|---|---|---|---|---|---|---|---|"]
    for name, (rows, start, run_dir) in runs.items():
        diffs = {d.metric: d for d in learning_differences(run_dir, EVAL_METRICS)}
        wall = rows[-1]["time"] - start
        reach = next((t for t, m, *_ in series(rows, start, "eval/pass@1") if m >= 0.8), None)
        for i, metric in enumerate(EVAL_METRICS):
            (s0, *first), *_, (s1, *last) = eval_points(rows, metric)
            d = diffs[metric]
            lines.append(f"| {name if i == 0 else ''} | {metric} | {fmt(*first)} | {fmt(*last)} ({s1}) | "
                         f"{d.diff:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}] | {d.p_value:.4f} | "
                         f"{f'{wall:.0f}' if i == 0 else ''} | "
                         f"{('—' if reach is None else f'{reach:.0f}') if i == 0 else ''} |")
    return "\n".join(lines)


def ci_table(path: Path) -> str:
    """The learning checks' records (tests/test_learning.py with LEARNING_RESULTS=FILE), newest per run."""
    records = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        records[(r["algorithm"], r["seed"], tuple(r["extra"]))] = r
    lines = ["| algorithm | seed | switched | pass@1 base → step 6 | p "
             "| majority_correct@8 base → step 6 | p | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for (algorithm, seed, extra), r in sorted(records.items()):
        cells = [f"{r[m]['baseline']:.3f} → {r[m]['value']:.3f} ({r[m]['diff']:+.3f} [{r[m]['ci_low']:+.3f}, "
                 f"{r[m]['ci_high']:+.3f}]) | {r[m]['p_value']:.4f}" for m in ("pass@1", "majority_correct@8")]
        lines.append(f"| {algorithm} | {seed} | {' '.join(extra) or '—'} | {cells[0]} | {cells[1]} "
                     f"| {r['seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="*", help="NAME=RUN_DIR")
    p.add_argument("--ci-results", type=Path, help="also print the learning checks' table from this JSONL")
    p.add_argument("--img", type=Path, default=Path("docs/img"))
    p.add_argument("--out", type=Path, default=Path("docs/results/learning_table.md"))
    args = p.parse_args()
    if args.ci_results:
        print(ci_table(args.ci_results))
    if not args.runs:
        return
    runs = {}
    for spec in args.runs:
        name, _, folder = spec.partition("=")
        run_dir = Path(folder)
        rows = read_jsonl(run_dir / "metrics.jsonl")
        runs[name] = (rows, started_at(run_dir), run_dir)
        plot_run(name, rows, runs[name][1], args.img / f"learning_{name}.png")
    plot_overlay({n: (rows, start) for n, (rows, start, _) in runs.items()}, args.img / "learning_overlay.png")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table(runs) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
