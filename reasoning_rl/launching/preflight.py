"""Checks of a sweep before anything is submitted: the time limit leaves room to checkpoint, and the
partition and its GPUs exist (sinfo). Each failure is one SubmitError, which the launcher prints as one
`error: ...` line with exit status 2."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from reasoning_rl.errors import UserError

SUBMITIT_DEFAULT_SIGNAL_DELAY_S = 90


class SubmitError(UserError):
    """The sweep cannot go out as configured; nothing was submitted."""


def _sinfo(*args: str) -> list[str]:
    try:
        proc = subprocess.run(["sinfo", "-h", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SubmitError(f"sinfo did not answer ({exc}): is this a SLURM login node?") from None
    if proc.returncode != 0:
        raise SubmitError(f"sinfo failed: {proc.stderr.strip() or proc.returncode}")
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def min_timeout_min(signal_delay_s: int, checkpoint_margin_s: int) -> int:
    return math.ceil((signal_delay_s + checkpoint_margin_s) / 60)


def check_time_limit(params: Mapping[str, Any], checkpoint_margin_s: int) -> None:
    """SLURM signals the job signal_delay_s before its limit; the job must have run a while by then."""
    timeout_min = int(params.get("timeout_min") or 0)
    delay = int(params.get("signal_delay_s") or SUBMITIT_DEFAULT_SIGNAL_DELAY_S)
    if timeout_min * 60 < delay + checkpoint_margin_s:
        raise SubmitError(
            f"hydra.launcher.timeout_min={timeout_min} is too short to checkpoint: SLURM sends the checkpoint "
            f"signal signal_delay_s={delay} s before the time limit, and a job needs checkpoint_margin_s="
            f"{checkpoint_margin_s} s to start and finish a step before that; use timeout_min >= "
            f"{min_timeout_min(delay, checkpoint_margin_s)} (or lower hydra.launcher.signal_delay_s)")


def check_slurm_resources(params: Mapping[str, Any]) -> None:
    """The partition exists and has GPUs when GPUs are asked for (sinfo; nothing is submitted)."""
    for tool in ("sbatch", "sinfo"):
        if shutil.which(tool) is None:
            raise SubmitError(f"{tool} not found: submit from a SLURM login node, or use hydra/launcher=local")
    partitions = [p.strip() for p in str(params.get("partition") or "").split(",") if p.strip()]
    for partition in partitions:
        if not _sinfo("-p", partition, "-o", "%P"):
            known = ", ".join(p.rstrip("*") for p in _sinfo("-o", "%P")) or "none"
            raise SubmitError(f"partition {partition!r} does not exist on this cluster (partitions: {known}); "
                              "set hydra.launcher.partition (or SLURM_PARTITION)")
    gpus = params.get("gpus_per_node") or params.get("gpus_per_task")
    gres = str(params.get("gres") or "")
    if gpus or "gpu" in gres:
        where = ["-p", ",".join(partitions)] if partitions else []
        node_gres = sorted(set(_sinfo(*where, "-o", "%G")))
        if not any("gpu" in g for g in node_gres):
            asked = f"gpus_per_node={gpus}" if gpus else f"gres={gres}"
            place = f"partition {','.join(partitions)}" if partitions else "this cluster"
            raise SubmitError(f"hydra.launcher.{asked} asks for GPUs, but {place} has none (sinfo %G: "
                              f"{' '.join(node_gres) or 'nothing'}); set hydra.launcher.gpus_per_node=null "
                              "for a CPU job, or choose a GPU partition")
