"""A preempted SLURM task requeues itself, then resumes from its checkpoint in the same run dir.

Timeline of a preemption (or of the time limit coming close) for a train job on SLURM:

1. SLURM sends SIGUSR2 (`#SBATCH --signal=USR2@<signal_delay_s>`, or `scancel --signal=USR2`) or
   SIGTERM (preemption) to the task.
2. The training's `CheckpointCallback` handler (callbacks/checkpoint.py) sets a flag; the trainer
   saves a checkpoint at the end of the current step and stops; train_job.py calls
   `schedule_requeue()` and raises `Preempted`.
3. `job_run` marks the run dir `preempted` and closes the W&B run; the process exits with status 3.
   On the way out (atexit, so a slow W&B close is not cut short by SLURM's kill after KillWait),
   `scontrol requeue <array job>_<task>` (or `<job>`) puts the very same task back in the queue.
4. SLURM starts it again with the same job id, the same pickled Hydra config, so the same run dir
   (`<sweep dir>/${hydra.job.num}`): the train job finds its newest complete checkpoint and the
   W&B run id in `<run_dir>/wandb_run_id` and continues that run.

Who handles the signal when: submitit installs its own SIGUSR2 handler when the job process
starts; it would requeue and `sys.exit(-1)` from whatever line is running. The sweep launcher
(launching/launcher.py) replaces it first thing in the job with `install_early_handlers()`: before
training has anything to save, a signal stops the job as `Preempted` (run dir status `preempted`,
W&B run closed cleanly) and requeues it, and it starts over. Once training starts,
`CheckpointCallback` replaces that handler with save-at-step-end.

A task is not requeued when it is not a SLURM batch job, when SLURM no longer runs it (a user's
`scancel` also sends SIGTERM: the job then stays cancelled), when `REASONING_RL_REQUEUE=0`, or after
`REASONING_RL_MAX_REQUEUES` restarts (SLURM_RESTART_COUNT; default 20, set by the launcher's
`max_requeues`), so a job that cannot make progress does not loop forever.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from collections.abc import Mapping

from reasoning_rl.errors import Preempted

DISABLE_ENV = "REASONING_RL_REQUEUE"          # "0": never requeue
MAX_REQUEUES_ENV = "REASONING_RL_MAX_REQUEUES"
DEFAULT_MAX_REQUEUES = 20
SIGNALS = (signal.SIGUSR2, signal.SIGTERM)
# SLURM states in which a task may be put back in the queue. Not CANCELLED: scancel sends SIGTERM
# too, and a job the user cancelled must stay cancelled.
REQUEUEABLE_STATES = {"RUNNING", "PREEMPTED", "TIMEOUT", "SUSPENDED"}

_scheduled: str | None = None


def slurm_task(env: Mapping[str, str] = os.environ) -> str | None:
    """This task's id for scontrol: `<array job>_<task>` in an array, else the job id; None off SLURM."""
    if not env.get("SLURM_JOB_ID"):
        return None
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else env["SLURM_JOB_ID"]


def requeue_problem(env: Mapping[str, str] = os.environ) -> str | None:
    """Why this process must not requeue its task, or None when it should."""
    if slurm_task(env) is None:
        return "not a SLURM job"
    if env.get(DISABLE_ENV, "1") == "0":
        return f"{DISABLE_ENV}=0"
    if env.get("SLURM_PROCID", "0") != "0":
        return "not rank 0"  # rank 0 requeues the whole task once
    restarts = int(env.get("SLURM_RESTART_COUNT") or 0)
    limit = int(env.get(MAX_REQUEUES_ENV) or DEFAULT_MAX_REQUEUES)
    if restarts >= limit:
        return f"already requeued {restarts} times (limit {MAX_REQUEUES_ENV}={limit})"
    return None


def schedule_requeue() -> str:
    """Called where a job raises Preempted: on SLURM, requeue this task as the process exits.

    Returns how the run will resume, for the Preempted message.
    """
    global _scheduled
    problem = requeue_problem()
    if problem == "not a SLURM job":
        return "re-run the same command to resume"
    if problem:
        return f"not requeued ({problem}); re-run the same command to resume"
    task = slurm_task()
    if _scheduled is None:
        _scheduled = task
        atexit.register(_requeue_at_exit, task)
    return f"SLURM task {task} is requeued as it exits (unless it was cancelled) and resumes from there"


def scheduled() -> bool:
    return _scheduled is not None


def job_state(task: str) -> str | None:
    """The task's state according to slurmctld (RUNNING, CANCELLED, ...); None if unknown."""
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", task], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for field in out.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    return None


def requeue_now(task: str) -> bool:
    """`scontrol requeue TASK` unless the task is no longer running (cancelled by the user)."""
    state = job_state(task)
    if state is not None and state not in REQUEUEABLE_STATES:
        print(f"requeue: task {task} is {state}; not requeued", file=sys.stderr)
        return False
    try:
        proc = subprocess.run(["scontrol", "requeue", task], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"requeue: scontrol requeue {task} failed ({exc}); re-run the same command to resume",
              file=sys.stderr)
        return False
    if proc.returncode != 0:
        print(f"requeue: scontrol requeue {task} failed: {proc.stderr.strip()}; re-run the same command "
              "to resume", file=sys.stderr)
        return False
    print(f"requeue: task {task} requeued; it starts again from its last checkpoint, if any", file=sys.stderr)
    return True


def _requeue_at_exit(task: str) -> None:
    # The requeue makes SLURM signal this process (TERM, then KILL after KillWait): it is exiting anyway.
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    sys.stderr.flush()
    requeue_now(task)


def _early_signal(signum, frame) -> None:
    for sig in SIGNALS:  # one stop is enough; a second signal must not interrupt the clean-up
        signal.signal(sig, signal.SIG_IGN)
    how = schedule_requeue()
    raise Preempted(f"{signal.Signals(signum).name} before the job had a checkpoint to save; {how}")


def install_early_handlers() -> None:
    """Replace submitit's SIGUSR2 handler (and its SIGTERM bypass) at job start; see the module doc."""
    for sig in SIGNALS:
        signal.signal(sig, _early_signal)
