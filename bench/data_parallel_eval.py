"""Data parallel evaluation: the evaluate job on 2 processes (torchrun, gloo) against 1 process, same
problems and settings, run alternately in one session.

    python -m bench.data_parallel_eval           # 64 chain_sum problems x 8 samples, 2 repeats each
    python -m bench.data_parallel_eval --small   # 16 problems, 1 repeat each (CI-sized)

The ratio is of wall time, model loading included, since that is what a user waits for. On a CPU the
processes share its cores (each gets cores / 2 threads), so the gain is what splitting the batch
across processes buys over matmul threads; on a node with one GPU per process it is the GPU count.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from bench.common import parser, python_module, require_ok, run_watched, table, write_result


def evaluate(processes: int, problems: int, out: Path) -> dict:
    threads = max(1, (os.cpu_count() or 2) // processes)
    args = ["dataset=chain_sum", "prompt=short", f"dataset.limit={problems}", "eval.num_samples=8",
            "eval.ks=[1,8]", "generation.max_new_tokens=32", "logger=none", f"hydra.run.dir={out}"]
    if processes == 1:
        cmd = python_module("reasoning_rl.evaluate", *args)
    else:
        cmd = python_module("torch.distributed.run", "--nproc_per_node", str(processes),
                            "-m", "reasoning_rl.evaluate", *args)
    run = run_watched(cmd, timeout=3600, env={"OMP_NUM_THREADS": str(threads)})
    require_ok(run, f"evaluate on {processes} process(es)")
    rate = re.search(r"sampling: ([\d.]+) tokens/s", run["stdout"])
    summary = json.loads((out / "summary.json").read_text())
    return {"processes": processes, "threads_each": threads, "wall_s": run["seconds"],
            "tokens_per_s": float(rate.group(1)) if rate else None, "n": summary["pass@1"]["n"],
            "pass@1": summary["pass@1"]["mean"]}


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    problems, repeats = (16, 1) if args.small else (64, 2)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            for processes in (1, 2):  # alternately, so a change of load falls on both
                runs.append(evaluate(processes, problems, Path(tmp) / f"{processes}-{repeat}"))
                print(table([[r["processes"], r["wall_s"], r["tokens_per_s"] or 0.0, r["n"]] for r in runs[-1:]],
                            ["processes", "wall s", "tokens/s", "problems"]))
    one = [r["wall_s"] for r in runs if r["processes"] == 1]
    two = [r["wall_s"] for r in runs if r["processes"] == 2]
    speedup = (sum(one) / len(one)) / (sum(two) / len(two))
    assert all(r["n"] == problems for r in runs), "every problem once, whatever the number of processes"
    print(f"2 processes vs 1: {speedup:.2f}x faster in wall time ({problems} problems x 8 samples)")
    path = write_result("data_parallel_eval", {"problems": problems, "samples": 8, "runs": runs,
                                               "speedup_2_over_1": speedup}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
