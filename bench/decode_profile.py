"""Where a decode step's time goes: torch.profiler over our HF backend's sampling at the eval setting
(issue 18), split into linear matmuls, the LM head, attention, KV-cache ops, sampling, the rest of
the model, the loop's bookkeeping, and what no op accounts for (Python, dispatch, the profiler).

    python -m bench.decode_profile [--small] [--threads T]

Same sizes as `bench.eval_throughput` at full size: 8 GSM8K problems x N=8 = 64 rows in one batch of
64, 64 new tokens, T=0.7, `conf/evaluate.yaml` otherwise. It calls `HFBackend.generate_ids` directly
(no grading). Order: a short warm-up generation, one unprofiled generation (tokens/s without the
profiler), the same generation under torch.profiler (CPU, record_shapes, no stacks), then the
model's plain forward at the same shapes (prefill + decode steps with fixed tokens, no sampling) and
the Linear-layer matmul ceiling of `bench.eval_throughput`.

The categories come from profiler ranges this script puts around transformers' own pieces (cache
update and row selection, SDPA, RoPE, mask building, the LM head, the logits warpers, each model
call); `reasoning_rl/` is not touched. Each aten op's self CPU time goes to the nearest range it runs
under; "not in any op" is the decode phase's wall time minus every op's self time.

Writes bench/results/decode_profile.json and bench/results/decode_profile_table.json (the profiler's
own tables as text).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import statistics
import time
from collections import defaultdict
from typing import Any

import torch

from bench.common import RESULTS, parser, table, write_result

TAG = "bench::"
VOCAB_DIM = None  # set from the model config


# ----------------------------------------------------------------------------------------------- ranges
class _Ranges:
    """record_function ranges opened/closed from module hooks and from wrapped transformers functions."""

    def __init__(self):
        self.stack: list[Any] = []
        self.calls: dict[str, int] = defaultdict(int)
        self.undo: list[Any] = []

    def open(self, name: str) -> None:
        rf = torch.profiler.record_function(TAG + name)
        rf.__enter__()
        self.stack.append(rf)
        self.calls[name] += 1

    def close(self) -> None:
        self.stack.pop().__exit__(None, None, None)

    def wrap(self, name_or_fn, fn):
        """fn wrapped in a range; name_or_fn(*args) -> name when the name depends on the call."""
        ranges = self

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            name = name_or_fn(*args, **kwargs) if callable(name_or_fn) else name_or_fn
            with torch.profiler.record_function(TAG + name):
                ranges.calls[name] += 1
                return fn(*args, **kwargs)

        return wrapped

    def patch(self, owner, attr: str, name_or_fn) -> None:
        original = getattr(owner, attr)
        setattr(owner, attr, self.wrap(name_or_fn, original))
        self.undo.append(lambda: setattr(owner, attr, original))

    def hook_module(self, module, name_or_fn) -> None:
        def pre(mod, args, kwargs):
            self.open(name_or_fn(args, kwargs) if callable(name_or_fn) else name_or_fn)

        def post(mod, args, kwargs, output):
            self.close()

        h1 = module.register_forward_pre_hook(pre, with_kwargs=True)
        h2 = module.register_forward_hook(post, with_kwargs=True)
        self.undo += [h1.remove, h2.remove]

    def remove(self) -> None:
        while self.undo:
            self.undo.pop()()


def install_ranges(model, backend) -> _Ranges:
    from transformers import LogitsProcessorList, cache_utils
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.llama import modeling_llama

    r = _Ranges()

    def model_call(args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        return "prefill" if ids is not None and ids.shape[1] > 1 else "decode_forward"

    r.hook_module(model, model_call)
    r.hook_module(model.get_output_embeddings(), "lm_head")
    r.hook_module(model.model.rotary_emb, "rope")
    r.patch(modeling_llama, "apply_rotary_pos_emb", "rope")
    r.patch(modeling_llama, "create_causal_mask", "mask")
    r.patch(cache_utils.DynamicLayer, "update", "kv_update")

    def select_name(layer, indices):
        grows = layer.is_initialized and layer.keys.numel() and indices.numel() > layer.keys.shape[0]
        return "kv_expand" if grows else "kv_select"

    r.patch(cache_utils.DynamicLayer, "batch_select_indices", select_name)
    r.patch(LogitsProcessorList, "__call__", "warpers")
    impl = model.config._attn_implementation
    original_attention = ALL_ATTENTION_FUNCTIONS[impl]
    ALL_ATTENTION_FUNCTIONS[impl] = r.wrap("attention", original_attention)
    r.undo.append(lambda: ALL_ATTENTION_FUNCTIONS.__setitem__(impl, original_attention))
    original_decode = backend._decode
    backend._decode = r.wrap("decode_call", original_decode)
    r.undo.append(lambda: setattr(backend, "_decode", original_decode))
    return r


# -------------------------------------------------------------------------------------------- analysis
CATEGORIES = {
    "linear": "Linear matmuls, 7 per layer (q/k/v/o, gate/up/down)",
    "lm_head": "LM head (576 -> 49152 vocab projection)",
    "attention": "attention (SDPA on the cached K/V)",
    "kv_cache_append": "KV cache append (DynamicLayer.update: torch.cat of K and V)",
    "kv_cache_drop_rows": "KV cache row dropping (batch_select_indices when rows finish)",
    "rope": "RoPE (cos/sin + apply_rotary_pos_emb)",
    "mask": "attention mask building (create_causal_mask)",
    "model_other": "rest of the model (RMSNorm, SiLU*mul, residual adds, embedding, views)",
    "sampling": "sampling (temperature warper, softmax, multinomial over the vocab)",
    "loop_bookkeeping": "loop bookkeeping (isin EOS, mask growth, keep/nonzero, .tolist, remaining)",
}
RANGE_CATEGORY = {"lm_head": "lm_head", "kv_update": "kv_cache_append", "kv_select": "kv_cache_drop_rows",
                  "attention": "attention", "rope": "rope", "mask": "mask", "warpers": "sampling"}
MATMUL_OPS = {"aten::linear", "aten::addmm", "aten::mm", "aten::matmul", "aten::bmm"}
SAMPLING_OPS = {"aten::softmax", "aten::_softmax", "aten::multinomial", "aten::argmax", "aten::topk", "aten::sort",
                "aten::cumsum", "aten::div", "aten::div_", "aten::exponential_", "aten::log_softmax"}


def _ancestors(event):
    parent = event.cpu_parent
    while parent is not None:
        yield parent
        parent = parent.cpu_parent


def _is_range(event) -> bool:
    return event.name.startswith(TAG)


def _touches_vocab(event) -> bool:
    return any(isinstance(s, list) and s and s[-1] == VOCAB_DIM for s in (event.input_shapes or []))


def classify(event) -> tuple[str, str]:
    """(phase, category) of an aten op: phase prefill | decode | outside."""
    nearest_range = None
    in_forward = in_prefill = in_decode_call = in_expand = False
    under_matmul = event.name in MATMUL_OPS
    for a in _ancestors(event):
        name = a.name
        if name.startswith(TAG):
            tag = name[len(TAG):]
            if nearest_range is None and tag in RANGE_CATEGORY:
                nearest_range = tag
            in_forward |= tag == "decode_forward"
            in_prefill |= tag == "prefill"
            in_expand |= tag == "kv_expand"
            in_decode_call |= tag == "decode_call"
        elif name in MATMUL_OPS:
            under_matmul = True
    if in_prefill or in_expand:
        return "prefill", "prefill"
    if not in_decode_call:
        return "outside", "outside"
    if nearest_range is not None:
        return "decode", RANGE_CATEGORY[nearest_range]
    if in_forward:
        return "decode", "linear" if under_matmul else "model_other"
    if event.name in SAMPLING_OPS or _touches_vocab(event):
        return "decode", "sampling"
    return "decode", "loop_bookkeeping"


def analyse(prof, steps: int, rows_per_step: list[int]) -> dict[str, Any]:
    events = [e for e in prof.events() if e.device_type.name == "CPU"]
    main_thread = statistics.mode(e.thread for e in events if e.name == TAG + "decode_call")
    events = [e for e in events if e.thread == main_thread]
    ranges = [e for e in events if _is_range(e)]
    calls = [e for e in ranges if e.name == TAG + "decode_call"]
    prefill = [e for e in ranges if e.name in (TAG + "prefill", TAG + "kv_expand") and
               not any(a.name == TAG + "prefill" for a in _ancestors(e))]
    forwards = [e for e in ranges if e.name == TAG + "decode_forward"]
    decode_wall_us = sum(e.cpu_time_total for e in calls) - sum(e.cpu_time_total for e in prefill)

    self_us: dict[str, float] = defaultdict(float)
    by_op: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0, ""])
    prefill_ops_us = 0.0
    for e in events:
        if _is_range(e):
            continue
        phase, category = classify(e)
        if phase == "prefill":
            prefill_ops_us += e.self_cpu_time_total
        if phase != "decode":
            continue
        self_us[category] += e.self_cpu_time_total
        key = (e.name, str(e.input_shapes))
        by_op[key][0] += e.self_cpu_time_total
        by_op[key][1] += 1
        by_op[key][2] = category
    ops_us = sum(self_us.values())
    # Time in the ranges themselves and no op under them: Python (HF modeling code, our loop, hooks) and dispatch.
    range_self = defaultdict(float)
    for e in ranges:
        phase_prefill = e.name in (TAG + "prefill", TAG + "kv_expand") or any(
            a.name in (TAG + "prefill", TAG + "kv_expand") for a in _ancestors(e))
        if not phase_prefill:
            range_self["in the model call" if (e.name == TAG + "decode_forward" or any(
                a.name == TAG + "decode_forward" for a in _ancestors(e))) else "in the decode loop"] += e.self_cpu_time_total
    unattributed_us = decode_wall_us - ops_us

    def ms(us: float) -> float:
        return round(us / 1000, 2)

    breakdown = []
    for key, label in CATEGORIES.items():
        breakdown.append({"category": key, "what": label, "ms": ms(self_us.get(key, 0.0)),
                          "ms_per_step": round(self_us.get(key, 0.0) / 1000 / steps, 2),
                          "pct_of_decode_wall": round(100 * self_us.get(key, 0.0) / decode_wall_us, 1)})
    breakdown.append({"category": "not_in_any_op", "what": "decode wall time minus every op's self time "
                      "(Python: HF modeling code, our loop, the range hooks; dispatch; profiler)",
                      "ms": ms(unattributed_us), "ms_per_step": round(unattributed_us / 1000 / steps, 2),
                      "pct_of_decode_wall": round(100 * unattributed_us / decode_wall_us, 1)})
    top = sorted(by_op.items(), key=lambda kv: -kv[1][0])[:15]
    top_ops = [{"op": name, "input_shapes": shapes, "category": cat, "calls": int(n),
                "self_ms": ms(us), "pct_of_decode_wall": round(100 * us / decode_wall_us, 1)}
               for (name, shapes), (us, n, cat) in top]
    # Per-op-name totals (all shapes together) for the doc's table.
    by_name: dict[str, float] = defaultdict(float)
    for (name, _), (us, _, _) in by_op.items():
        by_name[name] += us
    return {
        "decode_wall_ms": ms(decode_wall_us),
        "decode_steps": steps,
        "decode_forward_calls": len(forwards),
        "decode_wall_ms_per_step": round(decode_wall_us / 1000 / steps, 1),
        "prefill_wall_ms": ms(sum(e.cpu_time_total for e in prefill)),
        "prefill_ops_self_ms": ms(prefill_ops_us),
        "decode_ops_self_ms": ms(ops_us),
        "range_self_ms": {k: ms(v) for k, v in range_self.items()},
        "breakdown": breakdown,
        "top_ops": top_ops,
        "top_op_names": [{"op": n, "self_ms": ms(us), "pct_of_decode_wall": round(100 * us / decode_wall_us, 1)}
                         for n, us in sorted(by_name.items(), key=lambda kv: -kv[1])[:15]],
        "rows_per_step": rows_per_step,
    }


# ------------------------------------------------------------------------------------------- reference
def plain_forward(model, backend, rows: list[list[int]], steps: int) -> dict[str, Any]:
    """The model's own forward at our shapes: prefill the distinct prompts, copy the cache rows to the
    samples (as `_decode` does), then `steps` decode calls with a fixed token and no sampling."""
    from transformers import DynamicCache

    pad = backend.tokenizer.pad_token_id or 0
    distinct = list(dict.fromkeys(tuple(r) for r in rows))
    source = torch.tensor([distinct.index(tuple(r)) for r in rows])
    width = max(len(r) for r in distinct)
    input_ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in distinct])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in distinct])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        start = time.perf_counter()
        model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
              **{backend._cache_arg: cache})
        cache.batch_select_indices(source)
        prefill_s = time.perf_counter() - start
        mask, position = mask[source], positions[source][:, -1:] + 1
        token = torch.full((len(rows), 1), 198)
        times = []
        for _ in range(steps):
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
            start = time.perf_counter()
            model(input_ids=token, attention_mask=mask, position_ids=position, use_cache=True,
                  **{backend._cache_arg: cache})
            times.append(time.perf_counter() - start)
            position = position + 1
    return {"prefill_seconds": prefill_s, "step_seconds_median": statistics.median(times),
            "step_seconds_min": min(times), "steps": steps, "kv_length_start": width, "rows": len(rows),
            "tokens_per_s_median_step": len(rows) / statistics.median(times)}


def main() -> None:
    global VOCAB_DIM
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--problems", type=int)
    p.add_argument("--n", type=int)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own, 2 on this machine)")
    p.add_argument("--plain-steps", type=int, default=16, help="decode calls timed for the plain forward")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    problems_n = args.problems or (2 if args.small else 8)
    n = args.n or (4 if args.small else 8)
    max_new = args.max_new_tokens or (16 if args.small else 64)
    batch = args.batch_size
    load_start = os.getloadavg()
    wall_start = time.perf_counter()

    from bench.eval_throughput import compose_eval_cfg, linear_ceiling
    from reasoning_rl import models
    from reasoning_rl.data import load_problems
    from reasoning_rl.generation import build_backend, sampling_params_from_cfg
    from reasoning_rl.prompts import apply_chat_template

    cfg = compose_eval_cfg([f"dataset.limit={problems_n}", f"eval.num_samples={n}", f"eval.ks=[1,{n}]",
                            f"generation.max_new_tokens={max_new}", f"generation.batch_size={batch}"])
    model, tokenizer = models.load_model_and_tokenizer(cfg.model)
    VOCAB_DIM = model.config.vocab_size
    problems, _ = load_problems(cfg.dataset, cfg.prompt)
    prompts = [apply_chat_template(tokenizer, pr.messages) for pr in problems]
    backend = build_backend(cfg.generation, model=model, tokenizer=tokenizer)
    sampling = sampling_params_from_cfg(cfg.generation, n=n, seed=cfg.seed)
    prompt_ids = backend.encode(prompts)
    decode_batch = min(batch, problems_n * n)
    print(f"{problems_n} problems x N={n}, max {max_new} new tokens, T={sampling.temperature}, batch {batch}, "
          f"torch threads {torch.get_num_threads()}, attention {model.config._attn_implementation}, "
          f"prompt tokens {min(map(len, prompt_ids))}-{max(map(len, prompt_ids))}", flush=True)

    # Warm-up: first calls of a process pay one-time costs (allocator, kernels' first dispatch).
    backend.generate_ids(prompt_ids, dataclasses.replace(sampling, max_new_tokens=4), progress=False)

    backend.generate_ids(prompt_ids, sampling, progress=False)
    unprofiled = dict(backend.last_stats)
    print(f"unprofiled: {unprofiled['tokens']} tokens in {unprofiled['seconds']:.1f} s "
          f"({unprofiled['tokens_per_s']:.1f} tokens/s)", flush=True)

    rows_per_step: list[int] = []
    ranges = install_ranges(model, backend)
    count_rows = model.register_forward_pre_hook(
        lambda m, a, kw: rows_per_step.append(int(kw["input_ids"].shape[0])) if kw["input_ids"].shape[1] == 1 else None,
        with_kwargs=True)
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True,
                                    with_stack=False) as prof:
            results = backend.generate_ids(prompt_ids, sampling, progress=False)
    finally:
        count_rows.remove()
        ranges.remove()
    profiled = dict(backend.last_stats)
    print(f"profiled: {profiled['tokens']} tokens in {profiled['seconds']:.1f} s", flush=True)
    missing = [k for k in ("prefill", "decode_forward", "lm_head", "rope", "mask", "kv_update", "attention",
                           "warpers", "decode_call") if not ranges.calls.get(k)]
    if missing:
        raise SystemExit(f"profiler ranges never entered (transformers changed?): {missing}")

    # A decode step: one forward call of the live rows and the sampling of its logits (the first token of
    # each row is sampled from the prefill's logits, the last round samples and stops without a forward).
    steps = len(rows_per_step)
    analysis = analyse(prof, steps, rows_per_step)
    decode_tokens = profiled["tokens"] - profiled["sequences"]  # the first token of each row comes from the prefill
    analysis["decode_tokens"] = decode_tokens
    analysis["decode_tokens_per_s_profiled"] = round(decode_tokens / (analysis["decode_wall_ms"] / 1000), 1)

    plain = plain_forward(model, backend, [prompt_ids[i] for i in range(len(prompt_ids)) for _ in range(n)][:decode_batch],
                          args.plain_steps)
    ceiling = linear_ceiling(model, decode_batch)
    # Unprofiled decode time: the run's time minus one plain prefill (same work as ours: 8 distinct prompts + copy).
    unprofiled_decode_s = unprofiled["seconds"] - plain["prefill_seconds"]
    unprofiled_step_s = unprofiled_decode_s / steps
    reference = {
        "ours_unprofiled_tokens_per_s": round(unprofiled["tokens_per_s"], 1),
        "ours_unprofiled_decode_step_seconds_est": round(unprofiled_step_s, 4),
        "profiled_over_unprofiled_seconds": round(profiled["seconds"] / unprofiled["seconds"], 3),
        "plain_forward": plain,
        "linear_ceiling": ceiling,
        "ours_of_linear_ceiling": round(unprofiled["tokens_per_s"] / ceiling["tokens_per_s"], 3),
        "plain_forward_of_linear_ceiling": round(plain["tokens_per_s_median_step"] / ceiling["tokens_per_s"], 3),
    }

    print(f"\ndecode phase under the profiler: {analysis['decode_wall_ms'] / 1000:.1f} s over {steps} "
          f"steps ({analysis['decode_wall_ms_per_step']:.0f} ms/step); prefill {analysis['prefill_wall_ms'] / 1000:.1f} s")
    print(table([(b["category"], b["ms_per_step"], b["pct_of_decode_wall"]) for b in analysis["breakdown"]],
                ["category", "ms/step", "% of decode wall"]))
    print("\ntop ops (decode phase, self CPU):")
    print(table([(t["op"], t["input_shapes"][:70], t["calls"], t["self_ms"], t["pct_of_decode_wall"])
                 for t in analysis["top_ops"]], ["op", "input shapes", "calls", "self ms", "%"]))
    print(f"\nplain forward decode step: {plain['step_seconds_median'] * 1000:.0f} ms median; "
          f"Linear ceiling step {ceiling['step_seconds'] * 1000:.0f} ms; ours unprofiled ~{unprofiled_step_s * 1000:.0f} ms/step")

    table_text = {
        "by_name": prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40),
        "by_name_and_shape": prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total",
                                                                                 row_limit=40),
        "note": "the whole profiled generate_ids call (prefill included), as torch.profiler prints it",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    table_path = (args.out.with_name(args.out.stem + "_table.json") if args.out else RESULTS / "decode_profile_table.json")
    table_path.write_text(json.dumps(table_text, indent=2) + "\n")
    path = write_result("decode_profile", {
        "sizes": {"problems": problems_n, "n": n, "rows": len(prompt_ids) * n, "max_new_tokens": max_new,
                  "temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p,
                  "batch_size": batch, "torch_threads": torch.get_num_threads(),
                  "attn_implementation": model.config._attn_implementation,
                  "prompt_tokens": [min(map(len, prompt_ids)), max(map(len, prompt_ids))], "small": args.small},
        "runs": {"unprofiled": unprofiled, "profiled": profiled},
        "profile": analysis,
        "reference": reference,
        "load_avg_at_start": load_start, "load_avg_at_end": os.getloadavg(),
        "wall_seconds": round(time.perf_counter() - wall_start, 1),
        "notes": [
            "decode phase = every _decode call minus its prefill (the prefill forward and the copy of the "
            "prompt's cache rows to its samples); per-step figures divide by the sampling rounds",
            "each aten op's self CPU time goes to the nearest bench:: range around it; Linear ops outside "
            "the LM head count as linear; ops in the loop outside the model that touch a vocab-sized tensor "
            "count as sampling",
            "not_in_any_op includes the profiler's own per-op cost: compare profiled_over_unprofiled_seconds",
            "shared machine: another job ran at normal priority beside this one, and this ran under nice 19; "
            "absolute ms are inflated by that, shares less so",
        ],
    }, args.out)
    print(f"results: {path}, {table_path}")


if __name__ == "__main__":
    main()
