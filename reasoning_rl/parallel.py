"""Data parallel over processes (torchrun, `accelerate launch`, or one SLURM task per GPU).

Every process runs the same job on its share of the work and they meet only here:
- `shard(items)`: this process's share of a list (every W-th item from its rank);
- `gather(local)`: every share back, in the list's original order, on every process;
- `mean(tensor)` / `total(tensor)`: an all-reduce, so every process takes the same step;
- `split_batch(...)`: the per-process batch that keeps the global batch of a one-process run.

With one process each is the identity, and nothing starts a process group. With several, the group is
accelerate's (gloo on CPU, nccl on GPU), started from torchrun's variables on first use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from reasoning_rl.errors import ConfigError

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def own_seed(seed: int) -> int:
    """A seed of this process's own: ranks that sampled with one seed would draw the same numbers."""
    return seed + 1_000_003 * rank()


def _group():
    """torch.distributed, its process group started if need be."""
    import torch.distributed as dist

    if not dist.is_initialized():
        from accelerate import PartialState

        PartialState()  # reads RANK / WORLD_SIZE / MASTER_ADDR; the backend fits the device
    return dist


def shard(items: Sequence[T]) -> list[T]:
    """Rank r's items r, r + W, r + 2W, …: shares differ by at most one, and `gather` undoes it."""
    return list(items[rank()::world_size()])


def gather(local: Sequence[T]) -> list[T]:
    """The shards of every rank, interleaved back into the order `shard` took them from."""
    size = world_size()
    if size == 1:
        return list(local)
    parts: list[Any] = [None] * size
    _group().all_gather_object(parts, list(local))
    total = sum(len(p) for p in parts)
    return [parts[i % size][i // size] for i in range(total)]


def total(tensor):
    """The sum over ranks (in place), the same on every rank."""
    if world_size() > 1:
        dist = _group()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def mean(tensor):
    """The mean over ranks (in place), the same on every rank."""
    if world_size() > 1:
        total(tensor).div_(world_size())
    return tensor


def any_rank(flag: bool) -> bool:
    """Whether `flag` holds in any process (every process gets the same answer)."""
    if world_size() == 1:
        return bool(flag)
    import torch

    return bool(total(torch.tensor([float(flag)])) > 0)


def mean_values(values: dict[str, float]) -> dict[str, float]:
    """Each number's mean over processes, in one all-reduce: e.g. a step's metrics, for the log."""
    if world_size() == 1:
        return values
    import torch

    averaged = mean(torch.tensor([float(v) for v in values.values()], dtype=torch.float64))
    return dict(zip(values, averaged.tolist(), strict=True))


def mean_gradients(params) -> None:
    """Average the gradients over processes, in one all-reduce, as DDP would: every process then steps
    the same way. A parameter must have a gradient in every process or in none."""
    grads = [p.grad for p in params if p.grad is not None]
    if world_size() == 1 or not grads:
        return
    import torch

    flat = mean(torch.cat([g.reshape(-1) for g in grads]))
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier() -> None:
    if world_size() > 1:
        _group().barrier()


def split_batch(per_device: int, accumulation: int, processes: int | None = None) -> tuple[int, int]:
    """(per_device_train_batch_size, gradient_accumulation_steps) per process, so that W processes
    together take the step one process takes with the configured pair: `hparams` always means the
    global batch. Accumulation is divided first: it keeps each forward pass as large as configured."""
    processes = processes or world_size()
    if processes == 1:
        return per_device, accumulation
    if accumulation % processes == 0:
        return per_device, accumulation // processes
    if (per_device * accumulation) % processes == 0:
        for steps in range(accumulation, 0, -1):  # the most accumulation that still divides
            if accumulation % steps == 0 and (per_device * accumulation // steps) % processes == 0:
                return per_device * accumulation // steps // processes, steps
    raise ConfigError(
        f"hparams.per_device_train_batch_size x gradient_accumulation_steps = {per_device} x {accumulation} "
        f"(the global batch) does not split over {processes} processes; make it a multiple of {processes}")


def launch_time(pattern: str) -> str:
    """`${launched:%H-%M-%S}`: when this launch started. For a torchrun / accelerate worker that is the
    start of its launcher (the parent of every rank on the node), so all ranks name the same run dir;
    Hydra's `${now:}` differs between ranks that start on either side of a second. Across nodes the
    launchers differ: there, set hydra.run.dir."""
    started = _parent_start() if "TORCHELASTIC_RUN_ID" in os.environ else None
    return (datetime.fromtimestamp(started) if started is not None else datetime.now()).strftime(pattern)


def _parent_start() -> float | None:
    try:
        with open(f"/proc/{os.getppid()}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    except (OSError, StopIteration, IndexError, ValueError):  # no /proc (macOS): the local time
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat: starttime, in ticks


def register_resolver() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("launched"):
        OmegaConf.register_new_resolver("launched", launch_time, use_cache=True)  # once per config, as ${now:}
