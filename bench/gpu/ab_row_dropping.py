"""A/B: the HF backend before the row-dropping loop (model.generate, from git) vs now, interleaved.

    python bench/gpu/ab_row_dropping.py PROMPTS MAX_NEW_TOKENS BATCH_SIZE REPS     # e.g. 8 256 64 2

Prints one JSON line per pass (wall and process CPU time). The numbers in docs/generation.md.
"""
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from omegaconf import OmegaConf

from reasoning_rl.data import load_problems
from reasoning_rl.generation import SamplingParams
from reasoning_rl.generation.hf import HFBackend as New
from reasoning_rl.models import load_model_and_tokenizer
from reasoning_rl.prompts import apply_chat_template

OLD = subprocess.run(["git", "show", "dcd207e^:reasoning_rl/generation/hf.py"], capture_output=True, text=True,
                     check=True, cwd=Path(__file__).parent).stdout
old_path = Path(tempfile.mkdtemp()) / "hf_old.py"
old_path.write_text(OLD)
spec = importlib.util.spec_from_file_location("hf_old", old_path)
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
Old = m.HFBackend
n_prompts, max_new, bs, reps = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(2)
model, tok = load_model_and_tokenizer(
    {"name_or_path": "smollm2-135m-instruct", "source": "embedded", "dtype": "float32"}, device="cpu")
problems, _ = load_problems(
    {"name": "gsm8k", "source": "bundled", "split": "test", "limit": n_prompts, "sample": "first", "seed": 0,
     "few_shot": 0},
    OmegaConf.load(Path(__file__).resolve().parents[2] / "conf/prompt/think_answer.yaml"))
prompts = [apply_chat_template(tok, p.messages) for p in problems]
params = SamplingParams(n=8, max_new_tokens=max_new, temperature=0.7, batch_size=bs, seed=0)
rows = []
for rep in range(reps):
    for name, cls in (("old", Old), ("new", New)):
        b = cls(model, tok)
        w, c = time.perf_counter(), time.process_time()
        out = b.generate(prompts, params, progress=False)
        w, c = time.perf_counter() - w, time.process_time() - c
        tokens = sum(x.num_tokens for p in out for x in p)
        row = {"impl": name, "rep": rep, "tokens": tokens, "wall_s": round(w, 1), "cpu_s": round(c, 1),
               "tok_per_wall_s": round(tokens / w, 2), "tok_per_cpu_s": round(tokens / c, 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
