"""Generation throughput and GRPO step time for a Llama-3.2-1B-shaped model with random weights.

One command, on a GPU machine (bf16) or on CPU at a reduced size (float32), for the side-by-side:

    python bench/gpu/bench.py                       # auto: cuda if there is one; size 1b on GPU, tiny on CPU
    python bench/gpu/bench.py --size tiny --device cpu --out bench/gpu/results/cpu_tiny.json

Needs only torch + transformers (+ peft for the GRPO part) and this repo's `reasoning_rl.generation`:
no hub access (the config is written out below), no TRL / Hydra / datasets. Throughput does not depend
on the weights, except through when sequences end: random weights almost never sample EOS, so every
sequence runs to --max-new-tokens (the worst case for the batch; real eval batches end earlier).

Parts, each written to the JSON:
* `generation.ours_<decode>`: our HF backend (`HFBackend.generate_ids`) on P prompts x N samples, tokens/s,
  for each of `--decodes` (generation.decode: dynamic, static, compiled; on a GPU compiled is the CUDA-graph
  path); `greedy_agreement`: how many greedy tokens the decodes share.
* `generation.hf_generate`: the same batch with plain `model.generate`, for the ratios `ours_vs_generate`.
  Each system first runs the full batch once untimed (`warmup_s`: compiling, recording graphs, the caching
  allocator's growth), then `--repeats` timed rounds interleaved across systems; the median round counts.
* `grpo`: S GRPO steps as TRL's GRPOTrainer takes them, on LoRA adapters: sample N per prompt with the
  backend, group-normalised advantages (of stand-in random rewards), one policy-gradient update
  (forward + backward over prompt + completion, AdamW step). Seconds per step, split into sampling
  and update.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo, without installing it

from reasoning_rl.generation.base import SamplingParams  # noqa: E402
from reasoning_rl.generation.hf import HFBackend  # noqa: E402

# meta-llama/Llama-3.2-1B-Instruct's config.json (the fields that set the compute).
LLAMA_3_2_1B = dict(
    vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
    num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
    rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True, hidden_act="silu",
    rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192},
    bos_token_id=128000, eos_token_id=[128001, 128008, 128009], pad_token_id=128004,
)
# The same architecture, small enough for a 2-core CPU (about 30M parameters).
SIZES = {
    "1b": LLAMA_3_2_1B,
    "tiny": {**LLAMA_3_2_1B, "vocab_size": 32000, "hidden_size": 512, "intermediate_size": 2048,
             "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
             "bos_token_id": 1, "eos_token_id": [2], "pad_token_id": 0},
}


class IdsTokenizer:
    """All the backend needs when prompts are given as ids: pad/eos ids and a decode."""

    def __init__(self, config):
        eos = config.eos_token_id
        self.eos_token_id = eos[0] if isinstance(eos, list) else eos
        self.pad_token_id = config.pad_token_id

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids))


def build_model(size: str, device: str, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SIZES[size])
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    return model.eval(), IdsTokenizer(config)


def random_prompts(count: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    # Lengths spread over ±25 % like real questions, so padding is exercised.
    lengths = torch.randint(int(length * 0.75), int(length * 1.25) + 1, (count,), generator=g).tolist()
    return [torch.randint(10, vocab, (n,), generator=g).tolist() for n in lengths]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_generation(model, tokenizer, prompts, params, device, decode: str = "dynamic") -> dict:
    backend = HFBackend(model, tokenizer, decode=decode)
    sync(device)
    start = time.perf_counter()
    results = backend.generate_ids(prompts, params, progress=False)
    sync(device)
    seconds = time.perf_counter() - start
    tokens = sum(c.num_tokens for per_prompt in results for c in per_prompt)
    return {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
            "sequences": len(prompts) * params.n}


def greedy_agreement(model, tokenizer, prompts, decodes: list[str], max_new_tokens: int = 64) -> dict:
    """Share of greedy tokens each decode has in common with the first one's, position by position. 1.0 on CPU
    in float32 (the same arithmetic); in bf16 on a GPU the static cache's attention over its whole capacity
    sums in another order, and a near-tie can then flip a token and everything after it."""
    params = SamplingParams(n=1, max_new_tokens=max_new_tokens, temperature=0.0, batch_size=len(prompts))
    outputs = {d: [c[0].token_ids for c in HFBackend(model, tokenizer, decode=d).generate_ids(
        prompts, params, progress=False)] for d in decodes}
    reference = outputs[decodes[0]]

    def same(a, b):
        return sum(x == y for x, y in zip(a, b)) / max(len(a), len(b))

    return {d: round(sum(map(same, reference, out)) / len(reference), 4) for d, out in outputs.items()
            if d != decodes[0]}


@torch.inference_mode()
def bench_plain_generate(model, prompts, params, device) -> dict:
    """`model.generate` on the same batches (no row dropping), for the ratio."""
    pad = model.generation_config.pad_token_id
    rows = [p for p in prompts for _ in range(params.n)]
    tokens, start = 0, time.perf_counter()
    for lo in range(0, len(rows), params.batch_size):
        batch = rows[lo : lo + params.batch_size]
        width = max(map(len, batch))
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in batch], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in batch], device=device)
        torch.manual_seed(params.seed)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=params.max_new_tokens,
                             do_sample=True, temperature=params.temperature, top_k=0, top_p=1.0)
        tokens += (out.shape[1] - width) * len(batch)
    sync(device)
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1)}


def bench_grpo(model, tokenizer, prompts, params, steps, device) -> dict:
    """GRPO steps on LoRA adapters: sample N per prompt, group advantages, one clipped-PG update (on-policy,
    so the ratio is 1 and the loss is -advantage x mean token log-prob, as TRL's with beta=0)."""
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    if device.startswith("cuda"):
        policy.gradient_checkpointing_enable()
        policy.enable_input_require_grads()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-5)
    backend = HFBackend(policy, tokenizer)
    g = torch.Generator().manual_seed(0)
    times = []
    for step in range(steps):
        sync(device)
        t0 = time.perf_counter()
        groups = backend.generate_ids(prompts, SamplingParams(**{**params.__dict__, "seed": step}), progress=False)
        sync(device)
        t1 = time.perf_counter()
        rewards = torch.rand(len(prompts), params.n, generator=g)  # stand-in rewards: the cost is the same
        advantages = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)).flatten()
        rows = [(p, c.token_ids) for p, group in zip(prompts, groups) for c in group]
        policy.train()
        optimizer.zero_grad()
        micro = params.batch_size // 4 or 1  # the update in micro-batches, like gradient accumulation
        for lo in range(0, len(rows), micro):
            loss = _pg_loss(policy, rows[lo : lo + micro], advantages[lo : lo + micro].to(device),
                            tokenizer.pad_token_id, device) * len(rows[lo : lo + micro]) / len(rows)
            loss.backward()
        optimizer.step()
        sync(device)
        t2 = time.perf_counter()
        times.append({"sampling_s": round(t1 - t0, 3), "update_s": round(t2 - t1, 3), "step_s": round(t2 - t0, 3)})
    later = times[1:] or times  # the first step includes allocator / kernel warm-up
    return {"steps": times, "mean_step_s": round(sum(t["step_s"] for t in later) / len(later), 3),
            "trainable_params": sum(p.numel() for p in policy.parameters() if p.requires_grad)}


def _pg_loss(policy, rows, advantages, pad, device):
    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.tensor([[pad] * (width - len(p) - len(c)) + p + c for p, c in rows], device=device)
    mask = torch.tensor([[0] * (width - len(p) - len(c)) + [1] * (len(p) + len(c)) for p, c in rows], device=device)
    completion = torch.zeros_like(mask)
    for k, (_, c) in enumerate(rows):
        completion[k, width - len(c):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = policy(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, :-1].float()
    logps = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    target = completion[:, 1:]
    per_row = (logps * target).sum(1) / target.sum(1).clamp(min=1)
    return -(advantages * per_row).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=sorted(SIZES), help="default: 1b on GPU, tiny on CPU")
    parser.add_argument("--prompts", type=int, help="default: 32 on GPU, 4 on CPU")
    parser.add_argument("-n", "--num-samples", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=160)  # a GSM8K question in the think_answer template
    parser.add_argument("--max-new-tokens", type=int, help="default: 256 on GPU, 32 on CPU")
    parser.add_argument("--batch-size", type=int, help="default: 256 on GPU, 32 on CPU")
    parser.add_argument("--grpo-steps", type=int, default=3, help="0 skips the GRPO part")
    parser.add_argument("--grpo-prompts", type=int, default=2, help="prompts per GRPO step (x N completions)")
    parser.add_argument("--skip-plain-generate", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of each system, interleaved")
    parser.add_argument("--decodes", default=None,
                        help="generation.decode arms, comma-separated (default: dynamic,compiled on a GPU, "
                             "dynamic,static on CPU)")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/gpu/results/<device>_<size>.json")
    args = parser.parse_args()

    gpu = args.device.startswith("cuda")
    size = args.size or ("1b" if gpu else "tiny")
    dtype = torch.bfloat16 if gpu else torch.float32
    model, tokenizer = build_model(size, args.device, dtype)
    prompts = random_prompts(args.prompts or (32 if gpu else 4), args.prompt_tokens, model.config.vocab_size)
    params = SamplingParams(n=args.num_samples, max_new_tokens=args.max_new_tokens or (256 if gpu else 32),
                            temperature=1.0, batch_size=args.batch_size or (256 if gpu else 32), seed=0)
    result: dict = {
        "machine": {"device": torch.cuda.get_device_name() if gpu else platform.processor() or platform.machine(),
                    "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "transformers": __import__("transformers").__version__},
        "model": {"size": size, "params": sum(p.numel() for p in model.parameters()), "dtype": str(dtype)},
        "settings": {"prompts": len(prompts), "n": params.n, "prompt_tokens": args.prompt_tokens,
                     "max_new_tokens": params.max_new_tokens, "batch_size": params.batch_size},
    }
    print(f"{size} model, {result['model']['params'] / 1e6:.0f}M params, {dtype}, on {result['machine']['device']}")
    decodes = (args.decodes or ("dynamic,compiled" if gpu else "dynamic,static")).split(",")
    systems = {f"ours_{d}": (lambda d=d: bench_generation(model, tokenizer, prompts, params, args.device, d))
               for d in decodes}
    if not args.skip_plain_generate:
        systems["hf_generate"] = lambda: bench_plain_generate(model, prompts, params, args.device)
    # Warm-up apart, then interleaved rounds: on a GPU the first full-size run in a process pays for the caching
    # allocator's growth and first-seen kernel shapes (an identical eval took 27 s, then 10 s, on an H200), and a
    # compiled decode for compiling and recording its graphs; neither belongs to the steady state.
    runs: dict[str, dict] = {}
    for name, run in systems.items():
        start = time.perf_counter()
        run()
        runs[name] = {"warmup_s": round(time.perf_counter() - start, 3), "rounds": []}
        print(f"warm-up {name}: {runs[name]['warmup_s']} s")
    for repeat in range(args.repeats):
        for name, run in systems.items():
            runs[name]["rounds"].append(run())
            print(f"[{repeat + 1}/{args.repeats}] {name}: {runs[name]['rounds'][-1]['tokens_per_s']} tokens/s")
    for run in runs.values():
        run["tokens_per_s"] = sorted(r["tokens_per_s"] for r in run["rounds"])[len(run["rounds"]) // 2]
    result["generation"] = runs
    if "hf_generate" in runs:
        result["ours_vs_generate"] = {name.removeprefix("ours_"): round(run["tokens_per_s"] /
                                                                       runs["hf_generate"]["tokens_per_s"], 3)
                                      for name, run in runs.items() if name != "hf_generate"}
        result["goal"] = {"ours_vs_generate_at_batch_256": 2.0, "met": max(result["ours_vs_generate"].values()) >= 2.0
                          and params.batch_size == 256}
        print("ours / model.generate:", result["ours_vs_generate"])
    if len(decodes) > 1:
        result["greedy_agreement"] = greedy_agreement(model, tokenizer, prompts, decodes)
        print("greedy tokens equal to the first decode's:", result["greedy_agreement"])
    if args.grpo_steps > 0:
        try:
            import peft  # noqa: F401
        except ImportError:
            result["grpo"] = {"skipped": "peft is not installed"}
        else:
            grpo_prompts = prompts[: args.grpo_prompts]
            result["grpo"] = bench_grpo(model, tokenizer, grpo_prompts, params, args.grpo_steps, args.device)
            print(f"GRPO ({len(grpo_prompts)} prompts x {params.n}): {result['grpo']['mean_step_s']} s/step")
    if gpu:
        result["machine"]["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    out = args.out or Path(__file__).parent / "results" / f"{args.device.split(':')[0]}_{size}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
