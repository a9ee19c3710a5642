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
            points[row["step"]] = (row[f"eval/{metric}"], row.get(f"eval/{metric}_ci_low"), row.get(f"eval/{metric}_ci_high"))
    return [(step, *points[step]) for step in sorted(points)]


def plot_eval_curves(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for metric in metrics:
        points = eval_points(rows, metric)
        if not points:
            continue
        steps, mean, low, high = zip(*points)
        (line,) = ax.plot(steps, mean, marker="o", label=metric)
        if None not in low and None not in high:
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training step")
    ax.set_ylabel("score (95% bootstrap CI)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
