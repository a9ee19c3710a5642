"""Compare runs: one row per run with the config keys that differ and the final metrics with 95 % CIs,
the difference from a baseline run with a paired bootstrap CI and p-value, curve and bar PNGs.

    python -m reasoning_rl.compare outputs/evaluate/2026-11-28/10-00-00 outputs/train/… [--baseline NAME]
    python -m reasoning_rl.compare multirun/train/2026-11-28/10-00-00      # a sweep dir: its sweep.json members

Each PATH is a run dir, a sweep dir (expanded with its sweep.json) or a folder holding run dirs
(a Hydra multirun dir, outputs/). Runs that failed, were preempted or still run are shown with their
status, never dropped. Writes compare.md, compare.csv, compare_paired.csv, compare_boundary.csv (problems
solved at pass@N gained and lost against the baseline, distinct answers), compare_curves.png,
compare_bars.png, compare_passk.png (pass@K against K) and plots.json (the plotted numbers) into --out.

A plain argparse CLI, not a Hydra job: it takes a list of paths, which Hydra's key=value
overrides cannot express, and it reads run dirs rather than starting one.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from reasoning_rl.comparison import report
from reasoning_rl.comparison.runs import load_runs
from reasoning_rl.errors import UserError, exit_on_user_error


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m reasoning_rl.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="run dir, sweep dir or folder of run dirs")
    parser.add_argument("--baseline",
                        help="path or table name of the run the others are compared with (default: the first)")
    parser.add_argument("--out", type=Path, help="output dir (default: outputs/compare/<date>/<time>)")
    parser.add_argument("--metrics", nargs="+", help="summary metrics to show (default: those every finished run has)")
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples for the differences")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the comparison as a W&B run (job_type compare): PNGs as images, the tables, "
                             "an artifact; mode/project from WANDB_MODE/WANDB_PROJECT, offline by default")
    parser.add_argument("--wandb-workspace", metavar="ENTITY/PROJECT",
                        help="also save a W&B workspace view with eval/pass@K and eval/maj@K panels for these runs "
                             "(needs `pip install wandb-workspaces` and W&B online; see docs/compare.md)")
    return parser.parse_args(argv)


def output_dir(out: Path | None) -> Path:
    path = out or Path("outputs/compare") / time.strftime("%Y-%m-%d/%H-%M-%S")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"output dir {path} cannot be created ({exc.strerror}); choose another with --out") from None
    return path


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.resamples < 1:
        raise UserError(f"--resamples must be >= 1, got {args.resamples}")
    runs = load_runs(args.paths)
    comparison = report.build(runs, baseline=args.baseline, metrics=args.metrics,
                              n_resamples=args.resamples, seed=args.seed)
    out = output_dir(args.out)
    command = shlex.join(["python", "-m", "reasoning_rl.compare", *(sys.argv[1:] if argv is None else argv)])
    files = report.write(comparison, out, command)

    print(report.terminal_text(comparison))
    for warning in comparison.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.wandb:
        from reasoning_rl.comparison.wandb_log import log_comparison

        logged = log_comparison(out, files, {"command": command, "runs": [r.name for r in comparison.runs],
                                             "baseline": comparison.baseline.name if comparison.baseline else None})
        if logged:
            print(f"W&B run: {logged}")
    if args.wandb_workspace:
        from reasoning_rl.comparison.wandb_workspace import save_workspace

        print(f"W&B workspace: {save_workspace(args.wandb_workspace, comparison)}")
    print("written: " + ", ".join(str(p) for p in files.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
