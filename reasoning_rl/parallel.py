"""Data parallel over processes (torchrun, `accelerate launch`, or one SLURM task per GPU).

Every process runs the same job on its share of the work and they meet only here:
- `shard(items)`: this process's contiguous share of a list;
- `gather(local)`: every share back, in the list's original order, on every process;
- `mean(tensor)` / `total(tensor)`: an all-reduce, so every process takes the same step;
- `split_batch(...)`: the per-process batch that keeps the global batch of a one-process run.

With one process each is the identity, and nothing starts a process group. With several, each is
accelerate's operation (split_between_processes, gather_object, reduce) on accelerate's process group
(gloo on CPU, nccl on GPU), started from torchrun's variables on first use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

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


def _state():
    """accelerate's process state; its first use starts the process group from RANK / WORLD_SIZE /
    MASTER_ADDR (gloo on CPU, nccl on GPU)."""
    import torch
    from accelerate import PartialState

    # cpu=True on a CPU machine, as the TRL trainers' `use_cpu` gives: without it accelerate sees no
    # distributed setup there, and its gather and reduce return this process's values alone.
    return PartialState(cpu=not torch.cuda.is_available())


def shard(items: Sequence[T]) -> list[T]:
    """This process's contiguous share of `items` (accelerate's split_between_processes): shares
    differ by at most one, and `gather` puts them back in order."""
    if world_size() == 1:
        return list(items)
    with _state().split_between_processes(list(items)) as mine:
        return list(mine)


def gather(local: Sequence[T]) -> list[T]:
    """Every process's share, concatenated in rank order (accelerate's gather_object), on every process."""
    if world_size() == 1:
        return list(local)
    from accelerate.utils import gather_object

    _state()
    return gather_object(list(local))


def total(tensor):
    """The sum over processes (accelerate's reduce), the same on every process."""
    if world_size() == 1:
        return tensor
    from accelerate.utils import reduce

    _state()
    return reduce(tensor, reduction="sum")


def mean(tensor):
    """The mean over processes, the same on every process."""
    if world_size() == 1:
        return tensor
    from accelerate.utils import reduce

    _state()
    return reduce(tensor, reduction="mean")


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
        _state().wait_for_everyone()


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
