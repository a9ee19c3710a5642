"""In-training eval cost: the share of wall time the Pass@8/Maj@8 callback takes at the default cadence
(conf/train.yaml's eval.every_steps on eval.limit problems, N=8), extrapolated from a short GRPO run that evaluates
every 2 steps on fewer problems with shorter answers (both scaled by the same rules; see `notes`).

    python -m bench.eval_cost [--small]
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

import yaml

from bench.common import REPO, goal_text, parser, python_module, require_ok, run_watched, table, write_result

GOAL = 0.15
_DEFAULT_EVAL = yaml.safe_load((REPO / "conf" / "train.yaml").read_text())["eval"]
DEFAULT_EVERY, DEFAULT_LIMIT = _DEFAULT_EVAL["every_steps"], _DEFAULT_EVAL["limit"]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    sizes = ({"steps": 5, "batch": 4, "max_new_tokens": 16, "eval_limit": 2} if args.small
             else {"steps": 5, "batch": 8, "max_new_tokens": 64, "eval_limit": 8})
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        run = run_watched(python_module(
            "reasoning_rl.train", "algorithm=grpo", "logger=none", f"hparams.max_steps={sizes['steps']}",
            f"hparams.per_device_train_batch_size={sizes['batch']}",
            f"generation.max_new_tokens={sizes['max_new_tokens']}",
            f"eval.limit={sizes['eval_limit']}", "eval.every_steps=2", "checkpoint.every_steps=100000",
            "dataset.limit=16", f"hydra.run.dir={run_dir}"), timeout=3600)
        require_ok(run, "train algorithm=grpo")
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    logged = {r["step"]: r["time"] for r in rows if "train/loss" in r}
    sampling = {r["step"]: r["eval/sampling_seconds"] for r in rows if "eval/sampling_seconds" in r}
    # The callback runs at the end of steps 2 and 4, before that step's log event: the interval ending at
    # an even step holds a step and an evaluation, the one ending at an odd step (3, 5) a step only.
    intervals = {s: logged[s] - logged[s - 1] for s in logged if s - 1 in logged}
    step = statistics.median([v for s, v in intervals.items() if s % 2])
    evals = [v - step for s, v in intervals.items() if s % 2 == 0]
    eval_seconds = statistics.median(evals)
    per_problem = eval_seconds / sizes["eval_limit"]
    measured_share = eval_seconds / (eval_seconds + 2 * step)

    default_eval = per_problem * DEFAULT_LIMIT
    share = default_eval / (default_eval + DEFAULT_EVERY * step)
    # Smallest cadence that meets the goal, and the eval.limit that meets it at the default cadence.
    every_needed = default_eval * (1 - GOAL) / (GOAL * step)
    limit_needed = GOAL / (1 - GOAL) * DEFAULT_EVERY * step / per_problem

    print(f"\nin-training eval cost (GRPO batch {sizes['batch']}, {sizes['max_new_tokens']} new tokens, N=8)")
    print(table([
        ("measured: every 2 steps", f"{sizes['eval_limit']} problems", round(eval_seconds, 1), round(step, 1),
         measured_share),
        (f"extrapolated: every {DEFAULT_EVERY} steps (default)", f"{DEFAULT_LIMIT} problems", round(default_eval, 1),
         round(step, 1), share),
    ], ["cadence", "eval set", "eval s", "step s", "eval share of wall"]))
    print(f"default cadence eval share: {share:.3f}  goal {goal_text(share, GOAL, False)}")
    if share > GOAL:
        print(f"the goal needs eval.every_steps >= {every_needed:.0f}, "
              f"or eval.limit <= {limit_needed:.0f} at every {DEFAULT_EVERY} steps")
    path = write_result("eval_cost", {
        "sizes": {**sizes, "small": args.small, "eval_every_measured": 2, "num_samples": 8},
        "measured": {"step_seconds": step, "eval_seconds": eval_seconds, "eval_seconds_each": evals,
                     "sampling_seconds": sampling, "intervals": intervals, "share_every_2": measured_share},
        "extrapolated_default": {"every_steps": DEFAULT_EVERY, "eval_limit": DEFAULT_LIMIT,
                                 "eval_seconds": default_eval, "share": share,
                                 "every_steps_for_goal": every_needed,
                                 "eval_limit_for_goal_at_default_every": limit_needed},
        "ratios": {"eval_share_default_cadence": share},
        "goals": {"eval_share_default_cadence": f"<= {GOAL}"},
        "notes": ["extrapolated, not measured: eval time scaled linearly in problems (batches of 64 sequences);"
                  " eval and step times taken at the same max_new_tokens, so their ratio is assumed to hold at"
                  " the default 512 (both are dominated by sampling the same model)",
                  "eval time = (interval with an eval) - (median interval without one)"],
    }, args.out)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
