"""GRPO step overhead: `python -m reasoning_rl.train algorithm=grpo` vs a bare TRL GRPOTrainer script
(bench/grpo_bare.py) with the same model, data, rewards, LoRA and sizes. Per-step wall time from each
trainer's own log events (model loading and the evaluations before and after training excluded).

    python -m bench.grpo_overhead [--small | --short]

--short is experiment=learn_grpo's size (reasoning-gym chain_sum, prompt=short, 12 new tokens, 2 prompts
x 8 completions, beta 0): with so few tokens per step, what costs per step rather than per token shows.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from bench.common import goal_text, parser, python_module, require_ok, run_watched, table, write_result

GOAL = 1.05  # ours with algorithm.rollouts=trl / bare, seconds per step (TRL's generate: the same sampling)
GOAL_OURS_ROLLOUTS = 0.9  # issue 18: ours with algorithm.rollouts=ours (our HF backend; auto's choice on CPU) / bare

SIZES = {
    "small": {"steps": 3, "batch": 4, "max_new_tokens": 16, "limit": 8},
    "default": {"steps": 5, "batch": 8, "max_new_tokens": 64, "limit": 16},
    "short": {"steps": 6, "batch": 16, "max_new_tokens": 12, "limit": 32},
}
# The short size is the learn task: ours takes the preset, the bare script the same settings by hand.
SHORT_OURS = ["experiment=learn_grpo"]
SHORT_BARE = ["--dataset", "chain_sum", "--prompt", "short", "--num-generations", "8", "--beta", "0",
              "--learning-rate", "2e-4", "--rewards", "correctness", "--weights", "1.0"]


def step_seconds(times: list[tuple[int, float]]) -> list[float]:
    """Durations of steps 2..S from (step, time logged) pairs: step 1 has no start mark of its own."""
    times = sorted(times)
    return [b - a for (_, a), (_, b) in zip(times, times[1:])]


def run_ours(sizes: dict, run_dir: Path, *extra: str) -> dict:
    overrides = [*extra,
        *(SHORT_OURS if sizes.get("short") else ["algorithm=grpo"]), "logger=none",
        f"hparams.max_steps={sizes['steps']}",
        f"hparams.per_device_train_batch_size={sizes['batch']}", f"generation.max_new_tokens={sizes['max_new_tokens']}",
        f"dataset.limit={sizes['limit']}",
        # The evaluations run before step 1 and after the last step only, outside the timed steps; keep them tiny.
        "eval.every_steps=0", "eval.limit=1", "eval.num_samples=1", "eval.ks=[1]",
        "checkpoint.every_steps=100000", f"hydra.run.dir={run_dir}",
    ]
    run = run_watched(python_module("reasoning_rl.train", *overrides), timeout=3600)
    require_ok(run, "train algorithm=grpo")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    times = [(r["step"], r["time"]) for r in rows if "train/loss" in r]
    return {"step_seconds": step_seconds(times), "wall_seconds": run["seconds"],
            "peak_rss_bytes": run["peak_rss_bytes"]}


def run_bare(sizes: dict) -> dict:
    run = run_watched(python_module("bench.grpo_bare", "--steps", str(sizes["steps"]), "--batch", str(sizes["batch"]),
                                    "--max-new-tokens", str(sizes["max_new_tokens"]), "--limit", str(sizes["limit"]),
                                    *(SHORT_BARE if sizes.get("short") else [])),
                      timeout=3600)
    require_ok(run, "bench.grpo_bare")
    times = json.loads(run["stdout"].strip().splitlines()[-1])["step_times"]
    return {"step_seconds": step_seconds([tuple(t) for t in times]), "wall_seconds": run["seconds"],
            "peak_rss_bytes": run["peak_rss_bytes"]}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--short", action="store_true", help="experiment=learn_grpo's size: 12 new tokens, 16 completions")
    p.add_argument("--repeats", type=int, help="interleaved runs per side; the fastest median step counts")
    args = p.parse_args()
    size = "short" if args.short else "small" if args.small else "default"
    sizes = {**SIZES[size], "short": args.short}
    repeats = args.repeats or (1 if args.small else 2)
    runs: dict[str, list[dict]] = {"ours": [], "ours_rollouts_ours": [], "bare_trl": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):  # interleaved: the machine is shared and its load moves
            runs["ours"].append(run_ours(sizes, Path(tmp) / f"ours{repeat}", "algorithm.rollouts=trl"))
            runs["ours_rollouts_ours"].append(run_ours(sizes, Path(tmp) / f"ours_backend{repeat}",
                                                       "algorithm.rollouts=ours"))
            runs["bare_trl"].append(run_bare(sizes))
            print(f"repeat {repeat}: " + ", ".join(f"{k} {v[-1]['step_seconds']}" for k, v in runs.items()), flush=True)
    best = {name: min(statistics.median(r["step_seconds"]) for r in rs) for name, rs in runs.items()}
    ratio = best["ours"] / best["bare_trl"]
    backend_ratio = best["ours_rollouts_ours"] / best["bare_trl"]
    print(f"\nGRPO step time: {sizes['steps']} steps of {sizes['batch']} completions, "
          f"{sizes['max_new_tokens']} new tokens")
    print(table([(name, best[name] / best["bare_trl"], round(best[name], 2)) for name in runs],
                ["trainer", "s/step vs bare TRL", "median s/step"]))
    print(f"ours / bare TRL: {ratio:.3f}  goal {goal_text(ratio, GOAL, False)}")
    print(f"ours, rollouts=ours / bare TRL: {backend_ratio:.3f}  "
          f"goal {goal_text(backend_ratio, GOAL_OURS_ROLLOUTS, False)}")
    path = write_result("grpo_overhead_short" if args.short else "grpo_overhead", {
        "sizes": {**sizes, "repeats": repeats, "small": args.small}, "runs": runs,
        "median_step_seconds": best, "ratios": {"ours_vs_bare_step_time": ratio,
                                                   "ours_rollouts_ours_vs_bare_step_time": backend_ratio},
        "goals": {"ours_vs_bare_step_time": f"<= {GOAL}",
                  "ours_rollouts_ours_vs_bare_step_time": f"<= {GOAL_OURS_ROLLOUTS}"},
        "notes": ["step time = interval between consecutive per-step log events (steps 2..S); the median per run,"
                  " the fastest run per side"],
    }, args.out)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
