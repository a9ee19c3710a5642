"""Does `torch.compile` of the decode step pay on CPU? Issue 18 asks for it "where it pays on CPU".

One run, the embedded model, a batch of B rows with a fixed prompt length, greedy, three decodes:
- `ours`: the HF backend's decode cache (generation/kv_cache.py), eager, attention over the filled part;
- `static`: transformers' StaticCache (fixed shapes, attention over the whole capacity), eager;
- `compiled`: the same StaticCache step through `torch.compile(model.forward)` (inductor, dynamic=False),
  timed on a second decode after a first one that compiles.
The step time is the median forward over the decode; tokens must agree across the three (same arithmetic).

    python -m bench.decode_compile [--small]     # bench/results/decode_compile.json
"""

from __future__ import annotations

import time
from typing import Any

import torch

from bench.common import parser, table, write_result


def decode(model, prompt: torch.Tensor, steps: int, cache, forward, full_mask: bool) -> tuple[torch.Tensor, list]:
    rows, width = prompt.shape
    mask = torch.ones((rows, width + steps), dtype=torch.long)
    positions = torch.arange(width)[None].expand(rows, -1)
    with torch.inference_mode():
        logits = model(input_ids=prompt, attention_mask=mask[:, :width], position_ids=positions, use_cache=True,
                       logits_to_keep=1, cache=cache).logits[:, -1]
        following, tokens, seconds = positions[:, -1:] + 1, [], []
        for step in range(steps):
            token = logits.argmax(-1)
            tokens.append(token)
            start = time.perf_counter()
            # A static cache is attended over its whole capacity: the mask's shape must not change.
            step_mask = mask if full_mask else mask[:, : width + step + 1]
            logits = forward(input_ids=token[:, None], attention_mask=step_mask, position_ids=following,
                             use_cache=True, cache=cache).logits[:, -1].clone()
            seconds.append(time.perf_counter() - start)
            following = following + 1
    return torch.stack(tokens, 1), seconds


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    rows, width, steps = (4, 32, 8) if args.small else (64, 190, 32)
    from transformers.cache_utils import StaticCache

    from reasoning_rl.generation.kv_cache import decode_cache
    from reasoning_rl.models import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer({"name_or_path": "smollm2-135m-instruct", "source": "embedded",
                                         "dtype": "float32"}, device="cpu")
    model.eval()
    prompt = torch.randint(100, 20000, (rows, width), generator=torch.Generator().manual_seed(0))
    compiled_forward = torch.compile(model.forward, dynamic=False)

    def static():
        return StaticCache(config=model.config, max_cache_len=width + steps)

    runs: dict[str, dict[str, Any]] = {}
    outputs = {}
    start = time.perf_counter()
    decode(model, prompt, steps, static(), compiled_forward, True)  # compiles
    compile_seconds = time.perf_counter() - start
    def ours():
        return decode_cache(model.config, width + steps)

    arms = (("ours", ours, model.forward, False), ("static", static, model.forward, True),
            ("compiled", static, compiled_forward, True))
    for name, cache, forward, full in arms:
        outputs[name], seconds = decode(model, prompt, steps, cache(), forward, full)
        median = sorted(seconds)[len(seconds) // 2]
        runs[name] = {"median_step_ms": 1000 * median, "tokens_per_s": rows / median}
    if not all(torch.equal(outputs["ours"], o) for o in outputs.values()):
        raise SystemExit("greedy tokens differ between the decodes: the arithmetic changed")
    ratios = {"compiled_over_static": runs["static"]["median_step_ms"] / runs["compiled"]["median_step_ms"],
              "compiled_over_ours": runs["ours"]["median_step_ms"] / runs["compiled"]["median_step_ms"],
              "static_over_ours": runs["ours"]["median_step_ms"] / runs["static"]["median_step_ms"]}
    result = {"sizes": {"rows": rows, "prompt_tokens": width, "steps": steps, "small": args.small,
                        "threads": torch.get_num_threads()},
              "runs": runs, "compile_seconds": compile_seconds, "greedy_tokens_identical": True,
              "speedups": ratios}
    path = write_result("decode_compile" + ("_small" if args.small else ""), result, args.out)
    print(table([[k, f"{v['median_step_ms']:.0f}", f"{v['tokens_per_s']:.0f}"] for k, v in runs.items()],
                ["decode step", "median ms", "tokens/s"]))
    print(f"compile: {compile_seconds:.0f} s; speed-ups (>1: faster): "
          + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()) + f"; written to {path}")


if __name__ == "__main__":
    main()
