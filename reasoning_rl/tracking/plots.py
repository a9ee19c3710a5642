"""PNG curves of the in-training evaluation, read back from metrics.jsonl."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def eval_points(rows: Sequence[Mapping[str, Any]], metric: str) -> list[tuple[int, float, float, float]]:
    """(step, mean, ci_low, ci_high) of `eval/<metric>`, last value per step (a resumed run may repeat one)."""
    points = {}
    for row in rows:
        if row.get(f"eval/{metric}") is not None:
            points[row["step"]] = (row[f"eval/{metric}"], row.get(f"eval/{metric}_ci_low"),
                                   row.get(f"eval/{metric}_ci_high"))
    return [(step, *points[step]) for step in sorted(points)]


def plot_eval_curves(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str], path: Path, title: str = "") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for metric in metrics:
        points = eval_points(rows, metric)
        if not points:
            continue
        steps, mean, low, high = zip(*points)
        (line,) = ax.plot(steps, mean, marker="o", label=metric)
        if None not in low and None not in high:
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    _step_axis(ax)
    ax.set_ylabel("score (95% bootstrap CI)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend()
    _save_single(plt, fig, ax, path, title)
    return path


def _save_single(plt, fig, ax, path: Path, title: str) -> None:
    """A one-panel figure, titled, saved and closed."""
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _step_panels(plt, count: int):
    """A row of `count` panels, one per metric, each against the training step."""
    fig, axes = plt.subplots(1, count, figsize=(5.2 * count, 4.0), squeeze=False)
    for ax in axes[0]:
        _step_axis(ax)
    return fig, axes[0]


def _step_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training step")
    ax.grid(alpha=0.3)


def _save_with_run_legend(plt, fig, axes, path: Path, title: str = "") -> None:
    """One legend under all panels with every run once (a run may be missing from some panels), then save."""
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    rows_of_legend = -(-len(labels) // 4) if handles else 0
    fig.tight_layout(rect=(0, 0.06 * rows_of_legend, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_colors(n: int) -> list:
    """One color per run, the same in every figure of a comparison."""
    plt = _pyplot()
    cycle = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cycle(i % cycle.N) for i in range(n)]


def plot_compare_curves(
    runs: Sequence[tuple[str, Sequence[Mapping[str, Any]], bool]], metrics: Sequence[str], path: Path, title: str = ""
) -> dict[str, dict[str, list]]:
    """One panel per metric, one line per run with its CI band, against the training step.

    runs: (name, metrics.jsonl rows, flat); a flat run (the evaluate job: one evaluation) is drawn
    as a dashed horizontal line with its band across the panel, as a reference level.
    Returns what was drawn, {metric: {run name: [[step, mean, ci_low, ci_high], …]}}, so tests and
    readers of the PNG's sidecar can check it without looking at pixels.
    """
    plt = _pyplot()
    colors = run_colors(len(runs))
    fig, axes = _step_panels(plt, len(metrics))
    drawn: dict[str, dict[str, list]] = {}
    for ax, metric in zip(axes, metrics):
        drawn[metric] = {}
        for (name, rows, flat), color in zip(runs, colors):
            points = eval_points(rows, metric)
            if not points:
                continue
            drawn[metric][name] = [list(p) for p in points]
            steps, mean, low, high = zip(*points)
            has_ci = None not in low and None not in high
            if flat:
                ax.axhline(mean[-1], color=color, linestyle="--", label=name)
                if has_ci:
                    ax.axhspan(low[-1], high[-1], color=color, alpha=0.1, linewidth=0)
            else:
                ax.plot(steps, mean, marker="o", color=color, label=name)
                if has_ci:
                    ax.fill_between(steps, low, high, color=color, alpha=0.15, linewidth=0)
        ax.set_ylabel(f"{metric} (95% bootstrap CI)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(metric)
    _save_with_run_legend(plt, fig, axes, path, title)
    return drawn


def train_points(rows: Sequence[Mapping[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) of a per-step training metric such as `train/reward`, last value per step."""
    points = {row["step"]: float(row[key]) for row in rows if isinstance(row.get(key), (int, float))}
    return sorted(points.items())


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over up to `window` values: per-step RL rewards are too noisy to read raw."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot_train_curves(
    runs: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], keys: Sequence[str], path: Path, window: int = 5
) -> dict[str, dict[str, list]]:
    """One panel per training metric (mean reward, KL, response length, …), one line per run: the raw
    per-step values faint, their moving average over `window` steps solid. Returns
    {key: {run name: [[step, value, smoothed], …]}} for the sidecar JSON."""
    plt = _pyplot()
    colors = run_colors(len(runs))
    fig, axes = _step_panels(plt, len(keys))
    drawn: dict[str, dict[str, list]] = {}
    for ax, key in zip(axes, keys):
        drawn[key] = {}
        for (name, rows), color in zip(runs, colors):
            points = train_points(rows, key)
            if not points:
                continue
            steps, values = zip(*points)
            smooth = moving_average(values, window)
            drawn[key][name] = [[s, v, m] for s, v, m in zip(steps, values, smooth)]
            ax.plot(steps, values, color=color, alpha=0.25, linewidth=1)
            ax.plot(steps, smooth, color=color, linewidth=2, label=name)
        ax.set_title(f"{key} (mean of {window} steps)", fontsize=9)
    _save_with_run_legend(plt, fig, axes, path)
    return drawn


def plot_metric_bars(
    runs: Sequence[tuple[str, Mapping[str, Mapping[str, float]]]], metrics: Sequence[str], path: Path, title: str = ""
) -> dict[str, dict[str, list[float]]]:
    """Grouped bars: one group per metric, one bar per run, error bars from the 95% CI.

    runs: (name, summary) with summary = {metric: {mean, ci_low, ci_high}}; a run without a
    metric gets no bar. Returns {metric: {run name: [mean, ci_low, ci_high]}}.
    """
    plt = _pyplot()
    import numpy as np

    colors = run_colors(len(runs))
    width = 0.8 / max(1, len(runs))
    fig, ax = plt.subplots(figsize=(max(6.4, 2.0 + 0.35 * len(metrics) * len(runs)), 4.0))
    drawn: dict[str, dict[str, list[float]]] = {m: {} for m in metrics}
    x = np.arange(len(metrics))
    for i, ((name, summary), color) in enumerate(zip(runs, colors)):
        present = [j for j, m in enumerate(metrics) if m in summary]
        if not present:
            continue
        means = [summary[metrics[j]]["mean"] for j in present]
        low = [summary[metrics[j]]["mean"] - summary[metrics[j]]["ci_low"] for j in present]
        high = [summary[metrics[j]]["ci_high"] - summary[metrics[j]]["mean"] for j in present]
        ax.bar(x[present] - 0.4 + width * (i + 0.5), means, width, yerr=[low, high], capsize=3,
               color=color, label=name)
        for j in present:
            s = summary[metrics[j]]
            drawn[metrics[j]][name] = [s["mean"], s["ci_low"], s["ci_high"]]
    ax.set_xticks(x, metrics)
    ax.set_ylabel("score (95% bootstrap CI)")
    ax.set_ylim(0, 1.02)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    _save_single(plt, fig, ax, path, title)
    return drawn
