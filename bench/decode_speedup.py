"""The HF backend's decode before and after issue 18's changes, in one run, repeats interleaved:
transformers' DynamicCache (a `torch.cat` per layer per step) and `torch.multinomial` (before), against
the pre-allocated KV cache and the inverse-CDF draw (after, generation/kv_cache.py and hf.py). Both
against the Linear-layer matmul ceiling measured between them (bench/eval_throughput.py).

    python -m bench.decode_speedup [--small]

Greedy tokens must be identical in both modes (same arithmetic); the bench fails otherwise.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch

from bench.common import goal_text, parser, table, write_result
from bench.eval_throughput import GOAL_OF_CEILING, compose_eval_cfg, linear_ceiling


@contextmanager
def before_issue_18():
    """The decode as it was: DynamicCache and torch.multinomial."""
    from transformers import DynamicCache

    import reasoning_rl.generation.hf as hf

    saved = hf.decode_cache, hf.sample_from_probs
    hf.decode_cache = lambda config, capacity: DynamicCache(config=config)
    hf.sample_from_probs = lambda probs: torch.multinomial(probs, num_samples=1).squeeze(1)
    try:
        yield
    finally:
        hf.decode_cache, hf.sample_from_probs = saved


def timed(backend, prompt_ids, params) -> dict[str, Any]:
    start = time.perf_counter()
    results = backend.generate_ids(prompt_ids, params, progress=False)
    seconds = time.perf_counter() - start
    tokens = sum(c.num_tokens for per_prompt in results for c in per_prompt)
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds,
            "token_ids": [[c.token_ids for c in p] for p in results]}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, help="interleaved repeats per mode; the fastest counts")
    args = p.parse_args()
    problems_n, n, max_new = (2, 4, 16) if args.small else (8, 8, 64)
    repeats = args.repeats or (1 if args.small else 3)
    batch = 64

    from reasoning_rl import models
    from reasoning_rl.data import load_problems
    from reasoning_rl.generation import build_backend, sampling_params_from_cfg
    from reasoning_rl.prompts import apply_chat_template

    cfg = compose_eval_cfg([f"dataset.limit={problems_n}", f"generation.max_new_tokens={max_new}",
                            f"generation.batch_size={batch}"])
    model, tokenizer = models.load_model_and_tokenizer(cfg.model)
    problems, _ = load_problems(cfg.dataset, cfg.prompt)
    backend = build_backend(cfg.generation, model=model, tokenizer=tokenizer)
    prompt_ids = backend.encode([apply_chat_template(tokenizer, pr.messages) for pr in problems])
    sampled = sampling_params_from_cfg(cfg.generation, n=n, seed=cfg.seed)
    greedy = sampling_params_from_cfg(cfg.generation, n=1, seed=cfg.seed)
    greedy = replace(greedy, temperature=0.0)

    with before_issue_18():
        greedy_before = timed(backend, prompt_ids, greedy)["token_ids"]
    greedy_after = timed(backend, prompt_ids, greedy)["token_ids"]
    if greedy_before != greedy_after:
        raise SystemExit("greedy tokens differ between the two decodes: the arithmetic changed")

    runs: dict[str, list[dict]] = {"before": [], "after": [], "ceiling": []}
    for _ in range(repeats):
        with before_issue_18():
            runs["before"].append(timed(backend, prompt_ids, sampled))
        runs["ceiling"].append(linear_ceiling(model, batch))
        runs["after"].append(timed(backend, prompt_ids, sampled))
    best = {k: max(v, key=lambda r: r["tokens_per_s"]) for k, v in runs.items()}
    for r in (best["before"], best["after"]):
        r.pop("token_ids")
    speedup = best["after"]["tokens_per_s"] / best["before"]["tokens_per_s"]
    of_ceiling = best["after"]["tokens_per_s"] / best["ceiling"]["tokens_per_s"]
    result = {
        "sizes": {"problems": problems_n, "n": n, "max_new_tokens": max_new, "batch_size": batch,
                  "temperature": sampled.temperature, "repeats": repeats, "small": args.small},
        "runs": best,
        "greedy_tokens_identical": True,
        "ratios": {"after_over_before": speedup, "after_of_ceiling": of_ceiling,
                   "before_of_ceiling": best["before"]["tokens_per_s"] / best["ceiling"]["tokens_per_s"]},
        "goals": {"after_of_ceiling": GOAL_OF_CEILING},
    }
    path = write_result("decode_speedup" + ("_small" if args.small else ""), result, args.out)
    print(table([["before (DynamicCache, multinomial)", f"{best['before']['tokens_per_s']:.1f}"],
                 ["after (pre-allocated cache, inverse CDF)", f"{best['after']['tokens_per_s']:.1f}"],
                 ["Linear-layer ceiling", f"{best['ceiling']['tokens_per_s']:.1f}"]], ["decode", "tokens/s"]))
    print(f"after / before: {speedup:.2f}x; after / ceiling: {of_ceiling:.2f} "
          f"({goal_text(of_ceiling, GOAL_OF_CEILING, True)}); written to {path}")


if __name__ == "__main__":
    main()
