"""The evaluate path with each `generation.decode` (dynamic, static, compiled) at the eval setting, on CPU.

The embedded model on GSM8K test problems, N samples each, temperature 0.7: rows end at different steps, so
the static decodes' buckets shrink as they would in a real evaluation. Each decode first runs once untimed
(the compiled one compiles a graph per bucket size there), then `--repeats` interleaved timed rounds; the
fastest counts. On a GPU the compiled decode is meant to pay (bench/gpu/bench.py measures it there).

    python -m bench.decode_modes [--small]       # bench/results/decode_modes{,_small}.json
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import parser, table, write_result
from bench.eval_throughput import compose_eval_cfg, run_ours

DECODES = ("dynamic", "static", "compiled")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    problems_n, n, max_new = (2, 4, 32) if args.small else (8, 8, 128)

    from reasoning_rl import models
    from reasoning_rl.data import load_problems
    from reasoning_rl.grading import get_grader
    from reasoning_rl.prompts import apply_chat_template

    base = [f"dataset.limit={problems_n}", f"eval.num_samples={n}", f"eval.ks=[1,{n}]",
            f"generation.max_new_tokens={max_new}", "generation.batch_size=64"]
    cfgs = {d: compose_eval_cfg([*base, f"generation.decode={d}"]) for d in DECODES}
    model, tokenizer = models.load_model_and_tokenizer(cfgs["dynamic"].model)
    problems, grader_name = load_problems(cfgs["dynamic"].dataset, cfgs["dynamic"].prompt)
    grader = get_grader(grader_name, answer_format=cfgs["dynamic"].prompt.answer_format)
    prompts = [apply_chat_template(tokenizer, pr.messages) for pr in problems]

    runs: dict[str, dict[str, Any]] = {}
    for decode, cfg in cfgs.items():
        start = time.perf_counter()
        run_ours(cfg, problems, prompts, model, tokenizer, grader)
        runs[decode] = {"warmup_s": time.perf_counter() - start}
        print(f"warm-up {decode}: {runs[decode]['warmup_s']:.1f} s", flush=True)
    for repeat in range(args.repeats):
        for decode, cfg in cfgs.items():
            r = run_ours(cfg, problems, prompts, model, tokenizer, grader)
            print(f"repeat {repeat} {decode}: {r['tokens']} tokens in {r['sampling_seconds']:.1f} s", flush=True)
            if "sampling_seconds" not in runs[decode] or r["sampling_seconds"] < runs[decode]["sampling_seconds"]:
                runs[decode].update(r)
    for r in runs.values():
        r["tokens_per_s"] = r["tokens"] / r["sampling_seconds"]
    ratios = {f"{d}_vs_dynamic": runs[d]["tokens_per_s"] / runs["dynamic"]["tokens_per_s"] for d in DECODES[1:]}
    path = write_result("decode_modes" + ("_small" if args.small else ""), {
        "sizes": {"problems": problems_n, "n": n, "max_new_tokens": max_new, "batch_size": 64,
                  "repeats": args.repeats, "small": args.small},
        "runs": runs, "ratios": ratios,
        "notes": ["tokens/s over the sampling time of the evaluate path; each decode's fastest round counts"],
    }, args.out)
    print(table([[d, f"{r['tokens_per_s']:.0f}", f"{r['warmup_s']:.0f}"] for d, r in runs.items()],
                ["decode", "tokens/s", "warm-up s"]))
    print(", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()) + f"; written to {path}")


if __name__ == "__main__":
    main()
