"""Why `.ci/run` runs the slow and learning suites as two 1-thread jobs (`-n 2`) instead of one
2-thread job at a time: the throughput of each layout on this machine, measured in the same run.

    python -m bench.threads_per_job            # prints seconds per item and the ratio

One item is what a training step of the learn presets costs: a forward and backward of the LoRA
model over 16 sequences of 45 tokens. Layout A runs ITEMS items in one process on all cores; layout
B runs ITEMS / 2 items in each of two concurrent processes with one thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ITEMS = 4


def work(threads: int, items: int) -> float:
    import torch
    from omegaconf import OmegaConf

    from reasoning_rl.models import apply_peft, load_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = apply_peft(load_model(OmegaConf.load("conf/model/smollm2_135m.yaml"), device="cpu"),
                       OmegaConf.load("conf/peft/lora.yaml"))
    model.train()
    ids = torch.randint(100, 1000, (16, 45))

    def step():
        model(ids).logits.float().log_softmax(-1).mean().backward()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(items):
        step()
    return time.perf_counter() - start


def child(threads: int, items: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.threads_per_job", "--child", str(threads), str(items)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(work(*args.child)))
        return
    cores = len(os.sched_getaffinity(0))
    one = child(cores, ITEMS)
    one_job = json.loads(one.communicate()[0])
    pair = [child(1, ITEMS // 2) for _ in range(2)]
    two_jobs = max(json.loads(proc.communicate()[0]) for proc in pair)
    print(f"{ITEMS} items, one job on {cores} threads: {one_job:.1f} s ({one_job / ITEMS:.2f} s/item)")
    print(f"{ITEMS} items, two concurrent 1-thread jobs: {two_jobs:.1f} s ({two_jobs / ITEMS:.2f} s/item)")
    print(f"throughput ratio (two jobs / one job): {one_job / two_jobs:.2f}x")


if __name__ == "__main__":
    main()
