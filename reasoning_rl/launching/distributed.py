"""Multi-GPU jobs on SLURM: torch.distributed / accelerate settings from SLURM's variables.

Two ways to get one process per GPU, both driven by the same mapping:

* SLURM starts them (what the sweep launcher does): `hydra/launcher=slurm` with
  `gpus_per_node=G` runs G tasks per node (`tasks_per_node` null = one per GPU); in each task the
  launcher calls `export_torch_env()`, which sets the torchrun-compatible variables that
  accelerate/transformers read (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, NODE_RANK,
  MASTER_ADDR, MASTER_PORT) from SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS, ...
* accelerate starts them: one SLURM task per node runs the command of `accelerate_command()`
  (`accelerate launch --multi_gpu --num_machines N --num_processes N*G --machine_rank ...`), e.g.
  from a hand-written sbatch script.

Everything here is a pure function of an environment mapping, so it is tested without GPUs;
`tests/test_launching.py::test_multi_gpu_smoke_on_gpu_node` runs it for real where there are >= 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

PORT_BASE = 20000   # MASTER_PORT = PORT_BASE + job id % PORT_SPAN: below Linux's ephemeral ports
PORT_SPAN = 10000
TORCH_KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: 'gpu[003-004,7],cpu1' -> 'gpu003' (what
    `scontrol show hostnames` prints first, without needing scontrol)."""
    group, depth = "", 0
    for ch in nodelist.strip():
        if ch == "," and depth == 0:
            break
        depth += (ch == "[") - (ch == "]")
        group += ch
    if not group:
        raise ValueError(f"empty SLURM node list: {nodelist!r}")
    return re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).split(",")[0].split("-")[0], group)


def tasks_on_this_node(env: Mapping[str, str]) -> int:
    """How many tasks of the job run on this node (SLURM_TASKS_PER_NODE is like '4(x2),2')."""
    if env.get("SLURM_NTASKS_PER_NODE"):
        return int(env["SLURM_NTASKS_PER_NODE"])
    spec = env.get("SLURM_TASKS_PER_NODE")
    if spec:
        counts: list[int] = []
        for part in spec.split(","):
            m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
            if m:
                counts += [int(m.group(1))] * int(m.group(2) or 1)
        node = int(env.get("SLURM_NODEID", 0))
        if node < len(counts):
            return counts[node]
    if env.get("SLURM_GPUS_ON_NODE"):
        return int(env["SLURM_GPUS_ON_NODE"])
    return 1


def master_port(env: Mapping[str, str]) -> int:
    """A port all tasks of a job agree on; SLURM_JOB_ID differs between tasks of one array."""
    return PORT_BASE + int(env["SLURM_JOB_ID"]) % PORT_SPAN


def torch_env(env: Mapping[str, str]) -> dict[str, str]:
    """The torch.distributed variables of this SLURM task (one process per GPU, started by srun)."""
    missing = [k for k in ("SLURM_JOB_ID", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_JOB_NODELIST") if not env.get(k)]
    if missing:
        raise ValueError(f"not inside a SLURM task: {', '.join(missing)} unset")
    return {
        "RANK": env["SLURM_PROCID"],
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "WORLD_SIZE": env["SLURM_NTASKS"],
        "LOCAL_WORLD_SIZE": str(tasks_on_this_node(env)),
        "NODE_RANK": env.get("SLURM_NODEID", "0"),
        "MASTER_ADDR": first_host(env["SLURM_JOB_NODELIST"]),
        "MASTER_PORT": str(master_port(env)),
    }


def export_torch_env(environ: dict | None = None) -> dict[str, str]:
    """In a SLURM task of a multi-task job, set the torch.distributed variables that are not set yet.

    Returns what it set (nothing for a single-task job, where torch runs without a process group).
    """
    environ = os.environ if environ is None else environ
    if int(environ.get("SLURM_NTASKS") or 1) < 2:
        return {}
    added = {k: v for k, v in torch_env(environ).items() if k not in environ}
    environ.update(added)
    return added


def accelerate_command(env: Mapping[str, str], job_args: Sequence[str], gpus_per_node: int | None = None,
                       module: str = "reasoning_rl.train") -> list[str]:
    """`accelerate launch` for one SLURM task per node that starts one process per GPU itself.

    job_args are the job's Hydra overrides; gpus_per_node defaults to SLURM_GPUS_ON_NODE.
    """
    nodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    gpus = gpus_per_node or int(env.get("SLURM_GPUS_ON_NODE") or 1)
    processes = nodes * gpus
    cmd = ["accelerate", "launch"]
    if processes > 1:
        cmd.append("--multi_gpu")
    cmd += [
        "--num_machines", str(nodes),
        "--num_processes", str(processes),
        "--machine_rank", env.get("SLURM_NODEID", "0"),
        "--main_process_ip", first_host(env.get("SLURM_JOB_NODELIST") or "localhost"),
        "--main_process_port", str(master_port(env)),
        "-m", module, *job_args,
    ]
    return cmd
