"""pass@K against K on a log2 axis, one line per run with its 95 % CI band: the reasoning-boundary
figure of Yue et al. 2025: RL typically lifts small K, and where its curve falls below the base
model's at large K the base model, sampled enough, solves more problems than the RL run."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from reasoning_rl.tracking.plots import run_colors

_PASS = re.compile(r"pass@(\d+)")


def passk_points(summary: Mapping[str, Mapping[str, float]]) -> list[list[float]]:
    """[[K, mean, ci_low, ci_high], …] by K, from a summary.json's pass@K entries."""
    points = [[int(m.group(1)), s["mean"], s["ci_low"], s["ci_high"]]
              for name, s in summary.items() if (m := _PASS.fullmatch(name))]
    return sorted(points)


def has_curve(runs: Sequence[tuple[str, Mapping[str, Mapping[str, float]]]]) -> bool:
    """Worth a figure: some run reports pass@K at two Ks or more (one K is a point, the bars show it)."""
    return any(len(passk_points(summary)) > 1 for _, summary in runs)


def plot_passk(runs: Sequence[tuple[str, Mapping[str, Mapping[str, float]]]], path: Path,
               title: str = "") -> dict[str, list]:
    """runs: (name, summary) of every compared run, so each keeps its color from the other figures; a
    run without pass@K gets no line. Returns {run name: [[K, mean, ci_low, ci_high], …]}, what was drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    drawn: dict[str, list] = {}
    for (name, summary), color in zip(runs, run_colors(len(runs))):
        points = passk_points(summary)
        if not points:
            continue
        drawn[name] = points
        ks, mean, low, high = zip(*points)
        ax.plot(ks, mean, marker="o", color=color, label=name)
        ax.fill_between(ks, low, high, color=color, alpha=0.15, linewidth=0)
    ks = sorted({p[0] for points in drawn.values() for p in points})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()  # log-axis minor ticks would label nothing useful between powers of 2
    ax.set_xlabel("K (samples per problem, log2 scale)")
    ax.set_ylabel("pass@K (95% bootstrap CI)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "pass@K: the reasoning boundary", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn
