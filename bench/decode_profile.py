"""Where a decode step's time goes: torch.profiler over our HF backend's sampling at the eval setting
(issue 18), split into linear matmuls, the LM head, attention, KV-cache ops, sampling, the rest of
the model, the loop's bookkeeping, and what no op accounts for (Python, dispatch, the profiler).

    python -m bench.decode_profile [--small] [--threads T]

Same sizes as `bench.eval_throughput` at full size: 8 GSM8K problems x N=8 = 64 rows in one batch of
64, 64 new tokens, T=0.7, `conf/evaluate.yaml` otherwise; it calls `HFBackend.generate_ids` directly
(no grading). Each measured generation runs to the end of a window of decode steps (default 16-23:
past the start, all 64 rows live, KV length ~207-214) and is stopped there. Order: a short warm-up;
the window unprofiled (tokens/s); the window with perf_counter timers around the pieces below (the
breakdown without the profiler); the window under torch.profiler (CPU, record_shapes, no stacks);
then the model's plain forward at the same batch (prefill + decode calls with a fixed token, no
sampling) and the Linear-layer matmul ceiling of `bench.eval_throughput`.

The categories come from ranges this script puts around transformers' own pieces (cache update and
row selection, SDPA, RoPE, mask building, the LM head, the logits warpers, each model call);
`reasoning_rl/` is not touched. Each aten op's self CPU time goes to the nearest range it runs under;
"not in any op" is the window's wall time minus every op's self time. Under the profiler the ops that
allocate large outputs (the KV cache's torch.cat, the vocab-sized sampling tensors) run several times
slower than without it (its memory grows ~0.3 GB a step and the new pages fault in), so the timers'
breakdown is the one to size fixes by; the profile names the ops, their shapes and counts.

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


def wrap_attention(model, recorder) -> None:
    """Route the model's attention function through `recorder.wrap` (undone with the recorder's patches)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    impl = model.config._attn_implementation
    original = ALL_ATTENTION_FUNCTIONS[impl]
    ALL_ATTENTION_FUNCTIONS[impl] = recorder.wrap("attention", original)
    recorder.undo.append(lambda: ALL_ATTENTION_FUNCTIONS.__setitem__(impl, original))


def install_ranges(model, backend, r: _Ranges) -> _Ranges:
    from transformers import LogitsProcessorList, cache_utils
    from transformers.models.llama import modeling_llama

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
    wrap_attention(model, r)
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


def classify(event) -> str | None:
    """Category of an aten op in the profiled window; None for one outside it."""
    nearest_range = None
    in_forward = in_window = False
    under_matmul = event.name in MATMUL_OPS
    for a in _ancestors(event):
        name = a.name
        if name.startswith(TAG):
            tag = name[len(TAG):]
            if nearest_range is None and tag in RANGE_CATEGORY:
                nearest_range = tag
            in_forward |= tag == "decode_forward"
            in_window |= tag == "window"
        elif name in MATMUL_OPS:
            under_matmul = True
    if not in_window:
        return None
    if nearest_range is not None:
        return RANGE_CATEGORY[nearest_range]
    if in_forward:
        return "linear" if under_matmul else "model_other"
    if event.name in SAMPLING_OPS or _touches_vocab(event):
        return "sampling"
    return "loop_bookkeeping"


def analyse(prof, steps: int) -> dict[str, Any]:
    events = [e for e in prof.events() if e.device_type.name == "CPU"]
    window = [e for e in events if e.name == TAG + "window"]
    if len(window) != 1:
        raise SystemExit(f"expected one profiled window range, found {len(window)}")
    window = window[0]
    events = [e for e in events if e.thread == window.thread]
    wall_us = window.cpu_time_total

    self_us: dict[str, float] = defaultdict(float)
    by_op: dict[tuple[str, str], list] = defaultdict(lambda: [0.0, 0, ""])
    range_self: dict[str, float] = defaultdict(float)
    for e in events:
        if _is_range(e):
            if e is window or any(a is window for a in _ancestors(e)):
                inside = e.name == TAG + "decode_forward" or any(
                    a.name == TAG + "decode_forward" for a in _ancestors(e))
                range_self["in the model call" if inside else "in the decode loop"] += e.self_cpu_time_total
            continue
        category = classify(e)
        if category is None:
            continue
        self_us[category] += e.self_cpu_time_total
        key = (e.name, str(e.input_shapes))
        by_op[key][0] += e.self_cpu_time_total
        by_op[key][1] += 1
        by_op[key][2] = category
    ops_us = sum(self_us.values())
    unattributed_us = wall_us - ops_us

    def ms(us: float) -> float:
        return round(us / 1000, 2)

    def row(key: str, what: str, us: float) -> dict[str, Any]:
        return {"category": key, "what": what, "ms": ms(us), "ms_per_step": round(us / 1000 / steps, 2),
                "pct_of_step": round(100 * us / wall_us, 1)}

    breakdown = [row(key, label, self_us.get(key, 0.0)) for key, label in CATEGORIES.items()]
    breakdown.append(row("not_in_any_op", "window wall time minus every op's self time (Python: HF modeling "
                         "code, our loop, the range hooks; dispatch; the profiler's own cost)", unattributed_us))
    top = sorted(by_op.items(), key=lambda kv: -kv[1][0])[:15]
    top_ops = [{"op": name, "input_shapes": shapes, "category": cat, "calls": int(n), "self_ms": ms(us),
                "ms_per_step": round(us / 1000 / steps, 2), "pct_of_step": round(100 * us / wall_us, 1)}
               for (name, shapes), (us, n, cat) in top]
    by_name: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for (name, _), (us, n, _) in by_op.items():
        by_name[name][0] += us
        by_name[name][1] += n
    return {
        "window_wall_ms": ms(wall_us),
        "window_steps": steps,
        "wall_ms_per_step": round(wall_us / 1000 / steps, 1),
        "ops_self_ms": ms(ops_us),
        "ops_per_step": round(sum(v[1] for v in by_op.values()) / steps),
        "range_self_ms": {k: ms(v) for k, v in range_self.items()},
        "breakdown": breakdown,
        "top_ops": top_ops,
        "top_op_names": [{"op": n, "calls_per_step": round(c / steps, 1), "ms_per_step": round(us / 1000 / steps, 2),
                          "pct_of_step": round(100 * us / wall_us, 1)}
                         for n, (us, c) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:15]],
    }


class _Timers:
    """The profiler's cross-check without the profiler: perf_counter around the same pieces (every
    nn.Linear, the LM head, SDPA, the cache's update and row selection, RoPE, the mask, the warpers and
    hf.py's torch.softmax / torch.multinomial), summed while the window is active."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.active = False
        self.undo: list[Any] = []

    def wrap(self, category, fn):
        timers = self

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            if not timers.active:
                return fn(*args, **kwargs)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timers.seconds[category] += time.perf_counter() - start

        return wrapped

    def patch(self, owner, attr: str, category: str) -> None:
        original = getattr(owner, attr)
        setattr(owner, attr, self.wrap(category, original))
        self.undo.append(lambda: setattr(owner, attr, original))

    def hook_module(self, module, category: str) -> None:
        starts: list[float] = []

        def pre(mod, args):
            starts.append(time.perf_counter())

        def post(mod, args, output):
            start = starts.pop()
            if self.active:
                self.seconds[category] += time.perf_counter() - start

        self.undo += [module.register_forward_pre_hook(pre).remove, module.register_forward_hook(post).remove]

    def remove(self) -> None:
        while self.undo:
            self.undo.pop()()


def install_timers(model) -> _Timers:
    from transformers import LogitsProcessorList, cache_utils
    from transformers.models.llama import modeling_llama

    t = _Timers()
    head = model.get_output_embeddings()
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            t.hook_module(m, "lm_head" if m is head else "linear")
    t.hook_module(model.model.rotary_emb, "rope")
    t.patch(modeling_llama, "apply_rotary_pos_emb", "rope")
    t.patch(modeling_llama, "create_causal_mask", "mask")
    t.patch(cache_utils.DynamicLayer, "update", "kv_cache_append")
    t.patch(cache_utils.DynamicLayer, "batch_select_indices", "kv_cache_drop_rows")
    t.patch(LogitsProcessorList, "__call__", "sampling")
    t.patch(torch, "softmax", "sampling")  # hf.py calls torch.softmax / torch.multinomial on the vocab
    t.patch(torch, "multinomial", "sampling")
    wrap_attention(model, t)
    return t


class _Stop(Exception):
    """Raised from the step hook once the window is done: the rest of the generation isn't needed."""


class StepWindow:
    """A forward pre-hook on the model that times every decode call, and (given a profiler) runs it over
    decode calls [start, start + steps) only, the loop's work after each call included; then stops the
    generation. Registered before the profiler ranges, so each window step is whole."""

    def __init__(self, model, start: int, steps: int, prof=None, ranges: _Ranges | None = None, timers=None):
        self.start, self.steps, self.prof, self.ranges, self.timers = start, steps, prof, ranges, timers
        self.calls = 0
        self.stamps: list[float] = []
        self.rows: list[int] = []
        self.kv_lengths: list[int] = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs["input_ids"]
        if ids.shape[1] != 1:
            return  # the prefill
        index = self.calls
        self.calls += 1
        if index == self.start + self.steps:
            self.stamps.append(time.perf_counter())
            if self.prof is not None:
                self.ranges.close()
                self.prof.stop()
            if self.timers is not None:
                self.timers.active = False
            raise _Stop
        if index == self.start:
            if self.prof is not None:
                self.prof.start()
                self.ranges.open("window")
            if self.timers is not None:
                self.timers.active = True
            self.stamps.append(time.perf_counter())
        if index >= self.start:
            self.rows.append(int(ids.shape[0]))
            self.kv_lengths.append(int(kwargs["attention_mask"].shape[1]))

    def run(self, fn) -> bool:
        try:
            fn()
            return False
        except _Stop:
            return True
        finally:
            self.handle.remove()

    @property
    def seconds(self) -> float:
        return self.stamps[-1] - self.stamps[0]


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
    p.add_argument("--plain-steps", type=int, default=8, help="decode calls timed for the plain forward")
    p.add_argument("--window-start", type=int, help="first profiled decode call (default 16; --small: 4)")
    p.add_argument("--window-steps", type=int, help="decode calls profiled (default 8; --small: 4)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    problems_n = args.problems or (2 if args.small else 8)
    n = args.n or (4 if args.small else 8)
    max_new = args.max_new_tokens or (16 if args.small else 64)
    batch = args.batch_size
    args.window_start = args.window_start if args.window_start is not None else (4 if args.small else 16)
    args.window_steps = args.window_steps or (4 if args.small else 8)
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
    if args.window_start + args.window_steps >= max_new:
        raise SystemExit("the window must end before max_new_tokens")

    # The same window without the profiler (only the timing hook): the reference for the profiler's cost.
    plain_run = StepWindow(model, args.window_start, args.window_steps)
    if not plain_run.run(lambda: backend.generate_ids(prompt_ids, sampling, progress=False)):
        raise SystemExit("the generation ended before the window did (all rows finished)")
    unprofiled = {"seconds": plain_run.seconds, "tokens": sum(plain_run.rows),
                  "tokens_per_s": sum(plain_run.rows) / plain_run.seconds, "rows": plain_run.rows,
                  "kv_lengths": plain_run.kv_lengths}
    print(f"unprofiled window: {unprofiled['tokens']} tokens in {unprofiled['seconds']:.1f} s "
          f"({unprofiled['tokens_per_s']:.1f} tokens/s)", flush=True)

    # The same window with perf_counter timers around the pieces (no profiler).
    timers = install_timers(model)
    timed_run = StepWindow(model, args.window_start, args.window_steps, timers=timers)
    try:
        timed_run.run(lambda: backend.generate_ids(prompt_ids, sampling, progress=False))
    finally:
        timers.remove()
    timed_us = {k: v * 1e6 for k, v in timers.seconds.items()}
    timed_wall_us = timed_run.seconds * 1e6
    timed = {"seconds": timed_run.seconds, "tokens": sum(timed_run.rows), "breakdown": [
        {"category": key, "ms_per_step": round(timed_us.get(key, 0.0) / 1000 / args.window_steps, 2),
         "pct_of_step": round(100 * timed_us.get(key, 0.0) / timed_wall_us, 1)}
        for key in CATEGORIES if key not in ("model_other", "loop_bookkeeping")]}
    rest_us = timed_wall_us - sum(timed_us.values())
    timed["breakdown"].append({"category": "rest", "what": "rest of the model and the loop, Python, the timers",
                               "ms_per_step": round(rest_us / 1000 / args.window_steps, 2),
                               "pct_of_step": round(100 * rest_us / timed_wall_us, 1)})
    print(f"timed window: {timed['tokens']} tokens in {timed['seconds']:.1f} s", flush=True)
    print(table([(b["category"], b["ms_per_step"], b["pct_of_step"]) for b in timed["breakdown"]],
                ["category (timers)", "ms/step", "% of step"]), flush=True)

    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True,
                                  with_stack=False)
    ranges = _Ranges()
    window = StepWindow(model, args.window_start, args.window_steps, prof, ranges)  # before the ranges' hooks
    install_ranges(model, backend, ranges)
    try:
        window.run(lambda: backend.generate_ids(prompt_ids, sampling, progress=False))
    finally:
        ranges.remove()
    profiled = {"seconds": window.seconds, "tokens": sum(window.rows),
                "tokens_per_s": sum(window.rows) / window.seconds, "rows": window.rows, "kv_lengths": window.kv_lengths}
    print(f"profiled window: {profiled['tokens']} tokens in {profiled['seconds']:.1f} s", flush=True)
    missing = [k for k in ("decode_forward", "lm_head", "rope", "mask", "kv_update", "attention", "warpers")
               if not ranges.calls.get(k)]
    if missing:
        raise SystemExit(f"profiler ranges never entered (transformers changed?): {missing}")
    analysis = analyse(prof, args.window_steps)
    analysis["tokens"] = profiled["tokens"]
    analysis["tokens_per_s_profiled"] = round(profiled["tokens"] / (analysis["window_wall_ms"] / 1000), 1)

    rows = [ids for ids in prompt_ids for _ in range(n)][:decode_batch]
    plain = plain_forward(model, backend, rows, args.plain_steps)
    ceiling = linear_ceiling(model, decode_batch)
    step_s = unprofiled["seconds"] / args.window_steps
    reference = {
        "ours_unprofiled_step_seconds": round(step_s, 4),
        "ours_unprofiled_tokens_per_s": round(unprofiled["tokens_per_s"], 1),
        "profiled_over_unprofiled_seconds": round(profiled["seconds"] / unprofiled["seconds"], 3),
        "timed_over_unprofiled_seconds": round(timed["seconds"] / unprofiled["seconds"], 3),
        "plain_forward": plain,
        "linear_ceiling": ceiling,
        "ours_of_linear_ceiling": round(unprofiled["tokens_per_s"] / ceiling["tokens_per_s"], 3),
        "plain_forward_of_linear_ceiling": round(plain["tokens_per_s_median_step"] / ceiling["tokens_per_s"], 3),
        "ours_step_over_plain_forward_step": round(step_s / plain["step_seconds_median"], 3),
    }

    print(f"\nprofiled window: decode steps {args.window_start}-{args.window_start + args.window_steps - 1}, "
          f"{analysis['window_wall_ms'] / 1000:.2f} s ({analysis['wall_ms_per_step']:.0f} ms/step, "
          f"{analysis['ops_per_step']} ops/step), KV length {window.kv_lengths[0]}-{window.kv_lengths[-1]}, "
          f"rows {window.rows[0]}-{window.rows[-1]}")
    print(table([(b["category"], b["ms_per_step"], b["pct_of_step"]) for b in analysis["breakdown"]],
                ["category", "ms/step", "% of step"]))
    print("\ntop ops (window, self CPU):")
    print(table([(t["op"], t["input_shapes"][:70], t["calls"], t["ms_per_step"], t["pct_of_step"])
                 for t in analysis["top_ops"]], ["op", "input shapes", "calls", "ms/step", "%"]))
    print(f"\nunprofiled step {step_s * 1000:.0f} ms ({unprofiled['tokens_per_s']:.0f} tokens/s); plain forward "
          f"step {plain['step_seconds_median'] * 1000:.0f} ms; "
          f"Linear ceiling step {ceiling['step_seconds'] * 1000:.0f} ms "
          f"({ceiling['tokens_per_s']:.0f} tokens/s); ours / ceiling {reference['ours_of_linear_ceiling']:.2f}")

    table_text = {
        "by_name": prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40),
        "by_name_and_shape": prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total",
                                                                                 row_limit=40),
        "note": "the profiled window as torch.profiler prints it (bench:: rows are this script's ranges)",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    table_path = (args.out.with_name(args.out.stem + "_table.json") if args.out
                  else RESULTS / "decode_profile_table.json")
    table_path.write_text(json.dumps(table_text, indent=2) + "\n")
    path = write_result("decode_profile", {
        "sizes": {"problems": problems_n, "n": n, "rows": len(prompt_ids) * n, "max_new_tokens": max_new,
                  "temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p,
                  "batch_size": batch, "torch_threads": torch.get_num_threads(),
                  "attn_implementation": model.config._attn_implementation,
                  "prompt_tokens": [min(map(len, prompt_ids)), max(map(len, prompt_ids))],
                  "window_start": args.window_start, "window_steps": args.window_steps, "small": args.small},
        "runs": {"unprofiled": unprofiled, "timed": {k: v for k, v in timed.items() if k != "breakdown"},
                 "profiled": profiled},
        "timers": timed["breakdown"],
        "profile": analysis,
        "reference": reference,
        "load_avg_at_start": load_start, "load_avg_at_end": os.getloadavg(),
        "wall_seconds": round(time.perf_counter() - wall_start, 1),
        "notes": [
            "a step = one forward call of the live rows plus the loop's work after it (sampling, bookkeeping, "
            "row dropping); the window is decode calls [window_start, window_start + window_steps), and each "
            "generation stops after it",
            "the profiler runs over the window only: over a whole generation its memory grew by ~0.3 GB a "
            "step (12 GB and an OOM kill at 64 rows x 32 tokens)",
            "each aten op's self CPU time goes to the nearest bench:: range around it; Linear ops outside "
            "the LM head count as linear; loop ops outside the model that touch a vocab-sized tensor count "
            "as sampling",
            "not_in_any_op includes the profiler's own per-op cost: compare profiled_over_unprofiled_seconds",
            "the plain forward starts at the prompt's KV length, the window ~window_start positions later",
            "shared machine, run under nice 19: compare shares and ratios, not absolute ms",
        ],
    }, args.out)
    print(f"results: {path}, {table_path}")


if __name__ == "__main__":
    main()
