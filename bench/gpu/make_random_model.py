"""Write a Llama-3.2-1B-shaped model with random weights and a real tokenizer to a directory, so the real
`python -m reasoning_rl.train` / `evaluate` jobs can run at that size where the hub is out of reach.

    python bench/gpu/make_random_model.py OUT_DIR [--size 1b|tiny] [--dtype bfloat16]

The tokenizer is the embedded SmolLM2 one (49,152 tokens), so the embedding and LM head are sized to it:
1.0B parameters instead of Llama's 1.24B (its 128,256-token vocabulary is most of the difference). Every
other dimension is Llama-3.2-1B's (bench.py's LLAMA_3_2_1B). Then, e.g.:

    python -m reasoning_rl.train algorithm=grpo model.name_or_path=OUT_DIR model.source=hub ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.gpu.bench import SIZES  # noqa: E402
from reasoning_rl.models import load_tokenizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    args = parser.parse_args()

    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer({"name_or_path": "smollm2-135m-instruct", "source": "embedded"})
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    config = LlamaConfig(**{**SIZES[args.size], "vocab_size": len(tokenizer), **ids})
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(getattr(torch, args.dtype))
    model.generation_config.eos_token_id = ids["eos_token_id"]
    model.generation_config.pad_token_id = ids["pad_token_id"]
    model.save_pretrained(args.out)
    tokenizer.padding_side = "right"  # as shipped; our loader sets left padding itself
    tokenizer.save_pretrained(args.out)
    print(f"wrote {args.out}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B params, {args.dtype}")


if __name__ == "__main__":
    main()
