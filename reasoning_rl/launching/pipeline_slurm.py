"""A pipeline on SLURM (reasoning_rl/pipeline.py): every stage submitted at once, each held by
`--dependency=afterok:<the jobs it needs>` and `--kill-on-invalid-dep=yes`.

An evaluate/train stage goes out as a one-run sweep of the user's launcher (`-m hydra/launcher=…`),
so it gets the sweep launcher's preflight checks, redaction and requeue on preemption; its run dir is
DIR/<stage> (an absolute `hydra.sweep.subdir`) and its sweep.json lands in DIR/.submit/<stage>. The
compare stage is one small submitit job of its own on the same partition.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reasoning_rl.errors import UserError
from reasoning_rl.launching import manifest
from reasoning_rl.tracking.run_dir import write_json_atomic

_ALIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "SUSPENDED", "RESIZING"}


def queued(job_id: str | None) -> bool:
    """Whether SLURM still has the job waiting or running (then a re-run must not submit it again)."""
    if not job_id:
        return False
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return bool(set(out.stdout.split()) & _ALIVE)


def dependency_overrides(job_ids: Sequence[str]) -> list[str]:
    if not job_ids:
        return []
    return [f"++hydra.launcher.additional_parameters.dependency=afterok:{':'.join(job_ids)}",
            "++hydra.launcher.additional_parameters.kill_on_invalid_dep=yes"]


def submit_sweep_stage(cmd: Sequence[str], root: Path, name: str, launcher: Sequence[str], after: Sequence[str]) -> str:
    """One-run sweep of the stage's job; returns its SLURM job id."""
    sweep_dir = root / ".submit" / name
    placement = [*launcher, f"hydra.sweep.dir={sweep_dir}", f"hydra.sweep.subdir={root / name}"]
    # Hydra's -m before the overrides: its argparse takes no flag after the positionals.
    multirun = [*cmd[:3], "-m", *cmd[3:]]
    result = subprocess.run([*multirun, *placement, *dependency_overrides(after)], capture_output=True, text=True)
    if result.returncode != 0:
        lines = ([line for line in result.stderr.splitlines() if line.startswith("error: ")]
                 or result.stderr.splitlines()[-1:])
        raise UserError(f"stage {name} was not submitted: "
                        f"{(lines[-1] if lines else 'exit status ' + str(result.returncode)).removeprefix('error: ')}")
    return str(manifest.load(sweep_dir)["members"][0]["job_id"])


def launcher_params(launcher: Sequence[str]) -> dict[str, Any]:
    """The launcher's settings as the stages' jobs see them (composed as the evaluate job would)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import reasoning_rl.launching.launcher  # noqa: F401  (registers the launcher schemas)
    from reasoning_rl.pipeline import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("evaluate",
                      overrides=[o for o in launcher if not o.startswith(("hydra.launcher.submitit_folder",))],
                      return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    return {k: v for k, v in params.items() if k in ("partition", "account", "qos", "setup", "constraint", "exclude")}


def submit_compare(cmd: Sequence[str], root: Path, name: str, launcher: Sequence[str], after: Sequence[str]) -> str:
    import submitit
    from submitit.helpers import CommandFunction


    params = launcher_params(launcher)
    executor = submitit.AutoExecutor(folder=root / ".submit" / name / "%j", cluster="slurm")
    extra = {"dependency": f"afterok:{':'.join(after)}", "kill_on_invalid_dep": "yes"} if after else {}
    executor.update_parameters(
        timeout_min=30, cpus_per_task=1, mem_gb=4, name=f"pipeline-{name}",
        slurm_additional_parameters=extra,
        **{f"slurm_{k}": v for k, v in params.items() if v not in (None, [], "")})
    try:
        job = executor.submit(CommandFunction(list(cmd)))
    except Exception as exc:  # submitit's FailedJobError carries sbatch's stderr
        raise UserError(f"stage {name} was not submitted: {str(exc).splitlines()[-1]}") from None
    return str(job.job_id)


def submit(stages, root: Path, stage_overrides: Sequence[str], launcher: Sequence[str], state: dict) -> int:
    from reasoning_rl.pipeline import check_unchanged, command, finished, shown, status_table

    jobs: dict[str, str | None] = {}  # stage -> job id to wait for (None: finished before)
    for stage in stages:
        cmd = command(stage, root, stage_overrides)
        record: dict[str, Any] = state["stages"].setdefault(stage.name, {})
        if finished(stage, root):
            check_unchanged(stage, root, state, cmd)
            record.update(status="completed", command=shown(cmd))
            jobs[stage.name] = None
        elif queued(record.get("job_id")) and record.get("command") == shown(cmd):
            jobs[stage.name] = record["job_id"]  # submitted by an earlier call and still in the queue
        else:
            after = [jobs[n] for n in stage.needs if jobs.get(n)]
            submit_stage = submit_compare if stage.job == "compare" else submit_sweep_stage
            job_id = submit_stage(cmd, root, stage.name, launcher, after)
            record.update(status="submitted", command=shown(cmd), job_id=job_id, after=after)
            jobs[stage.name] = job_id
        write_json_atomic(root / "pipeline.json", state)
        print(f"{stage.name}: {record['status']}" + (f" as job {record.get('job_id')}" if jobs[stage.name] else ""),
              flush=True)
    print(status_table(stages, state))
    print(f"pipeline dir: {root}\nstatus:       squeue -j {','.join(j for j in jobs.values() if j) or '-'}; "
          "re-run this command to resubmit what failed")
    sys.stdout.flush()
    return 0


def stage_states(state: Mapping[str, Any]) -> dict[str, str]:
    """sacct's state of each submitted stage (tests, and a user's check)."""
    out = {}
    for name, record in state["stages"].items():
        if record.get("job_id"):
            out[name] = manifest.sacct_states(str(record["job_id"])).get(str(record["job_id"]), "UNKNOWN")
    return out
