"""Data parallel (reasoning_rl/parallel.py): shares, all-reduces and the global batch, checked on two
real gloo processes against what one process computes on the whole batch."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from reasoning_rl import parallel
from reasoning_rl.errors import ConfigError
from reasoning_rl.tracking.run_dir import read_jsonl
from tests.helpers import REPO, SHORT_TASK

SIZES = list(itertools.product(range(1, 9), range(1, 5), range(1, 5)))  # per device, accumulation, processes


@pytest.mark.parametrize("per_device,accumulation,processes", SIZES)
def test_split_batch_keeps_the_global_batch(per_device, accumulation, processes):
    global_batch = per_device * accumulation
    if global_batch % processes:
        with pytest.raises(ConfigError, match=f"does not split over {processes} processes"):
            parallel.split_batch(per_device, accumulation, processes)
        return
    local, steps = parallel.split_batch(per_device, accumulation, processes)
    assert local * steps * processes == global_batch
    assert local >= 1 and steps >= 1
    if accumulation % processes == 0:  # accumulation goes first: each forward pass stays as large
        assert local == per_device


def test_one_process_is_the_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    items = list("abcde")
    assert parallel.shard(items) == items and parallel.gather(items) == items
    x = torch.tensor([1.0, 2.0])
    assert parallel.mean(x) is x and parallel.total(x).tolist() == [1.0, 2.0]
    assert parallel.any_rank(False) is False and parallel.any_rank(True) is True
    assert parallel.own_seed(7) == 7  # one process samples what it always did


def test_a_signal_during_the_stop_vote_counts_at_the_next_vote(monkeypatch):
    """Every process must act on the vote, not on its own flag: a SIGUSR2 handled as this process returns from
    the all-reduce (where it spends most of its waiting) sets its flag after the others voted 'go on'."""
    from types import SimpleNamespace

    from reasoning_rl.algorithms.policy_gradient import PolicyGradientTrainer

    callback = SimpleNamespace(preempted=False)
    trainer = SimpleNamespace(ctx=SimpleNamespace(checkpoint_callback=callback, preempted=False))

    def vote(flag: bool) -> bool:  # the others voted False; the signal lands before the call returns
        callback.preempted = trainer.ctx.preempted = True
        return flag

    monkeypatch.setattr(parallel, "any_rank", vote)
    assert PolicyGradientTrainer.stopping(trainer) is False  # what every other process was told
    assert PolicyGradientTrainer.stopping(trainer) is True  # and at the next vote all of them stop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_group(rank: int, world: int, port: int, check: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    result = globals()[check](rank, world)
    with open(f"{out}.{rank}", "w") as f:
        json.dump(result, f)
    torch.distributed.destroy_process_group()


def run_in_processes(check: str, tmp_path, world: int = 2) -> list:
    out = str(tmp_path / check)
    mp.start_processes(_in_group, args=(world, _free_port(), check, out), nprocs=world, start_method="spawn")
    results = []
    for rank in range(world):
        with open(f"{out}.{rank}") as f:
            results.append(json.load(f))
    return results


def _shards(rank, world):
    return {str(n): [parallel.shard(list(range(n))), parallel.gather(parallel.shard(list(range(n))))]
            for n in range(0, 8)}


def test_gather_undoes_shard(tmp_path):
    results = run_in_processes("_shards", tmp_path)
    for n in range(8):
        shares = [r[str(n)][0] for r in results]
        assert sorted(x for share in shares for x in share) == list(range(n))  # every item once
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
        assert all(r[str(n)][1] == list(range(n)) for r in results)  # back in order, on every rank


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 6, generator=g), (torch.rand(4, 6, generator=g) > 0.3).float()


def _reductions(rank, world):
    from reasoning_rl.algorithms.pg_ops import whiten

    x, mask = _batch(rank)
    w = torch.nn.Linear(3, 1)
    torch.nn.init.constant_(w.weight, 1.0)
    (w(torch.full((2, 3), float(rank + 1))).sum()).backward()
    parallel.mean_gradients(w.parameters())
    return {
        "whitened": whiten(x, mask).tolist(),
        "grad": w.weight.grad.tolist(),
        "any": [parallel.any_rank(rank == 1), parallel.any_rank(False)],
        "values": parallel.mean_values({"reward": float(rank), "kl": 2.0 * rank}),
        "seed": parallel.own_seed(0),
    }


def test_reductions_match_one_process_on_the_whole_batch(tmp_path, monkeypatch):
    from reasoning_rl.algorithms.pg_ops import whiten

    results = run_in_processes("_reductions", tmp_path)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    parts = [_batch(rank) for rank in range(2)]
    whole = whiten(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    assert torch.allclose(torch.tensor(results[0]["whitened"] + results[1]["whitened"]), whole, atol=1e-6)
    # d/dW sum(W·x) over 2 rows of (r+1): 2(r+1) per weight; the mean over ranks 1 and 2 → 3.
    assert results[0]["grad"] == results[1]["grad"] == [[3.0, 3.0, 3.0]]
    assert all(r["any"] == [True, False] for r in results)
    assert all(r["values"] == {"reward": 0.5, "kl": 1.0} for r in results)
    assert results[0]["seed"] != results[1]["seed"]


class _Echo:
    """A backend whose answer to a prompt is the prompt: records are the same in any process."""

    last_stats: dict = {}

    def __init__(self):
        self.seen: list[str] = []

    def generate(self, prompts, params, *, progress=True):
        from reasoning_rl.generation.base import Completion

        self.seen += prompts
        return [[Completion(text=f"\\boxed{{{p}}}", num_tokens=2, finish_reason="stop") for _ in range(params.n)]
                for p in prompts]


def _evaluation(rank, world):
    from reasoning_rl.evaluation import evaluate

    problems, prompts = _problems()
    backend = _Echo()
    result = evaluate(problems, prompts, backend, _grader(), eval_cfg=_EVAL, sampling=_sampling(),
                      answer_format="boxed", progress=False)
    return {"records": result.records, "summary": result.summary, "seen": backend.seen}


def _problems():
    from reasoning_rl.data.base import Problem

    problems = [Problem(id=f"p{i}", messages=[], gold=str(i % 3)) for i in range(7)]
    return problems, [str(i) for i in range(7)]


def _grader():
    from reasoning_rl.grading import get_grader

    return get_grader("numeric", answer_format="boxed")


def _sampling():
    from reasoning_rl.generation.base import SamplingParams

    return SamplingParams(n=2)


_EVAL = {"num_samples": 2, "ks": [1, 2], "bootstrap": {"n_resamples": 50}}


def test_a_two_process_evaluation_splits_the_problems_and_agrees_with_one(tmp_path, monkeypatch):
    from reasoning_rl.evaluation import evaluate

    results = run_in_processes("_evaluation", tmp_path)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    problems, prompts = _problems()
    alone = evaluate(problems, prompts, _Echo(), _grader(), eval_cfg=_EVAL, sampling=_sampling(),
                     answer_format="boxed", progress=False)
    seen = [r["seen"] for r in results]
    assert sorted(seen[0] + seen[1]) == sorted(prompts) and not set(seen[0]) & set(seen[1])  # split, not repeated
    for r in results:
        assert r["records"] == json.loads(json.dumps(alone.records))
        assert r["summary"] == json.loads(json.dumps(alone.summary))


def test_every_rank_of_a_launch_names_the_same_run_dir():
    """Two workers of one launcher, started a second apart, read the launcher's start time."""
    code = ("import time, sys; time.sleep(float(sys.argv[1])); import reasoning_rl; "
            "from omegaconf import OmegaConf; print(OmegaConf.create({'d': '${launched:%H-%M-%S.%f}'}).d)")
    env = {**os.environ, "TORCHELASTIC_RUN_ID": "test"}
    first, second = (subprocess.run([sys.executable, "-c", code, delay], env=env, capture_output=True, text=True,
                                    check=True).stdout for delay in ("0", "1.1"))
    assert first == second
    env.pop("TORCHELASTIC_RUN_ID")
    alone = [subprocess.run([sys.executable, "-c", code, delay], env=env, capture_output=True, text=True,
                            check=True).stdout for delay in ("0", "0.1")]
    assert alone[0] != alone[1]  # outside a launch: the time now, as ${now:}


# ---- end to end: `torchrun --nproc_per_node 2 -m reasoning_rl.train …`, as on 2 GPUs, here with gloo on CPU

# 8 sequences a step (2 prompts x 4 completions for the RL algorithms), so each process takes half.
TWO_PROCESS_SMOKE = ["debug=smoke", *SHORT_TASK, "hparams.per_device_train_batch_size=8", "eval.limit=4",
                     "logger=none", "checkpoint.every_steps=1"]


def torchrun(*overrides: str, timeout: int = 900, wait: bool = True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "reasoning_rl.train",
           *overrides]
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["sft", "orpo", "grpo", "ppo", "trpo"])
def test_every_algorithm_trains_on_two_processes(algorithm, tmp_path):
    # The default run-dir pattern's ${launched:}: both ranks must land in one dir.
    result = torchrun(*TWO_PROCESS_SMOKE, f"algorithm={algorithm}", f"hydra.run.dir={tmp_path}/${{launched:%H-%M-%S}}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["pass@1"]["n"] == 4  # every eval problem once: split over the ranks, then gathered
    evals = [r["step"] for r in read_jsonl(run / "metrics.jsonl") if "eval/pass@1" in r]
    assert evals and len(evals) == len(set(evals))  # written by rank 0 alone
    for step in evals:
        records = read_jsonl(run / f"samples_step{step}.jsonl")
        assert sorted(r["id"] for r in records) == sorted({r["id"] for r in records}) and len(records) == 4
    assert result.stdout.count("run dir:") == 1  # rank 0 reports; the others stay quiet
    assert (run / "adapter" / "adapter_config.json").is_file()

    again = torchrun(*TWO_PROCESS_SMOKE, f"algorithm={algorithm}", f"hydra.run.dir={run}")
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    if algorithm != "orpo":  # ORPO resumes by rounds: a finished run skips them all
        assert "resuming from" in again.stdout + again.stderr


def _children(pid: int) -> dict[int, int]:
    """rank -> pid of torchrun's workers."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        pids = [int(p) for p in f.read().split()]
    ranks = {}
    for child in pids:
        with open(f"/proc/{child}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        ranks[int(env[b"RANK"])] = child
    return ranks


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_both_and_the_run_resumes_to_the_same_result(tmp_path):
    """SIGUSR2 to rank 1 only: rank 0 learns of it in the step's all-reduce, saves, and both stop; the
    re-run resumes and ends where a run that was never stopped ends."""
    sizes = [*TWO_PROCESS_SMOKE, "algorithm=ppo", "hparams.max_steps=3", "eval.every_steps=0", "eval.limit=2"]
    straight = tmp_path / "straight"
    result = torchrun(*sizes, f"hydra.run.dir={straight}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    resumed = tmp_path / "resumed"
    proc = torchrun(*sizes, f"hydra.run.dir={resumed}", wait=False)
    marker = resumed / "checkpoints" / "checkpoint-1" / "COMPLETE"
    deadline = time.time() + 900
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert marker.exists(), "no checkpoint before the signal"
    os.kill(_children(proc.pid)[1], signal.SIGUSR2)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0, output[-3000:]
    assert json.loads((resumed / "status.json").read_text())["status"] == "preempted", output[-3000:]
    assert not (resumed / "summary.json").exists()

    result = torchrun(*sizes, f"hydra.run.dir={resumed}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    a = load_file(straight / "adapter" / "adapter_model.safetensors")
    b = load_file(resumed / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    rewards = lambda run: {r["step"]: r["train/reward"] for r in read_jsonl(run / "metrics.jsonl")  # noqa: E731
                           if "train/reward" in r}
    assert rewards(resumed) == rewards(straight) and sorted(rewards(straight)) == [1, 2, 3]
