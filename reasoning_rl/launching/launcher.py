"""Sweeps through hydra-submitit-launcher: one job array per sweep, and no waiting on the login node.

`SweepSlurmLauncher` / `SweepLocalLauncher` subclass the plugin's `SlurmLauncher` / `LocalLauncher`.
On the submitting side they override `launch`:

1. check what would make the array fail later, before anything is submitted (partition exists,
   GPUs exist, time limit leaves room to checkpoint, run dirs are stable): one `error: ...` line,
   exit status 2;
2. submit ONE array with submitit's `executor.map_array` (as the plugin does);
3. write `<sweep dir>/sweep.json` (manifest.py), print the array job id, the sweep dir and the W&B
   group, and return at once: the plugin would wait for every result, holding a login-node
   process (and a terminal) for the length of the sweep;
4. with `hydra.launcher.wait=true`, wait instead, collect every member's result on its own (one
   failure does not hide the others), update the manifest and print a results table; exit 1 when a
   member failed.

On the job side they keep the plugin's `__call__` (recompose the member's config, run the task),
wrapped to replace submitit's preemption handler first (requeue.py), to export torch.distributed
variables in multi-task jobs (distributed.py), and to turn a job's `sys.exit(2)` into an error that
submitit reports with the job's own `error: ...` line.

Hydra only instantiates launcher classes that live in the `hydra_plugins` package, so the classes
Hydra sees are thin subclasses in `hydra_plugins/reasoning_rl_launcher`; their schemas (the
plugin's fields plus ours) are registered here as `hydra/launcher=submitit_slurm_sweep` and
`submitit_local_sweep`, the bases of conf/hydra/launcher/{slurm,slurm_local,local}.yaml.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf, open_dict

from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, LocalQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
from reasoning_rl.errors import Preempted
from reasoning_rl.launching import distributed, manifest, requeue
from reasoning_rl.launching.job_output import ErrorLineTee, RedactingStream, first_error_line, redact_submitit_files
from reasoning_rl.launching.preflight import SubmitError, check_slurm_resources, check_time_limit
from reasoning_rl.tracking.redact import (
    redact_config,
    redact_override,
    redact_yaml_files,
    secrets_of,
)

log = logging.getLogger(__name__)

PLUGIN_MODULE = "hydra_plugins.reasoning_rl_launcher"
OWN_PARAMS = ("wait", "checkpoint_margin_s", "max_requeues")


@dataclass
class SweepSlurmQueueConf(SlurmQueueConf):
    """The plugin's SLURM fields, plus ours."""

    _target_: str = f"{PLUGIN_MODULE}.SweepSlurmLauncher"
    # null: one task per GPU (gpus_per_node), 1 without GPUs.
    tasks_per_node: Optional[int] = None  # type: ignore[assignment]
    # Wait for the whole sweep and print a results table (false: return once submitted).
    wait: bool = False
    # Seconds a job needs to start and reach a training step; with signal_delay_s it sets the
    # shortest timeout_min that can still checkpoint before the limit.
    checkpoint_margin_s: int = 120
    # A preempted task requeues itself at most this many times (SLURM_RESTART_COUNT).
    max_requeues: int = requeue.DEFAULT_MAX_REQUEUES


@dataclass
class SweepLocalQueueConf(LocalQueueConf):
    _target_: str = f"{PLUGIN_MODULE}.SweepLocalLauncher"
    # submitit's local jobs are child processes cancelled when the submitting process exits:
    # local sweeps always wait.
    wait: bool = True
    checkpoint_margin_s: int = 0
    max_requeues: int = 0


ConfigStore.instance().store(group="hydra/launcher", name="submitit_slurm_sweep", node=SweepSlurmQueueConf(),
                             provider="reasoning_rl")
ConfigStore.instance().store(group="hydra/launcher", name="submitit_local_sweep", node=SweepLocalQueueConf(),
                             provider="reasoning_rl")


class JobExitError(RuntimeError):
    """A sweep member's job exited with a non-zero status (its own one-line error as the message)."""


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


# --------------------------------------------------------------------------------------------

class _SweepLauncher:
    """What both executors share; mixed in before the plugin's launcher class."""

    _EXECUTOR: str

    def __init__(self, wait: bool = False, checkpoint_margin_s: int = 120,
                 max_requeues: int = requeue.DEFAULT_MAX_REQUEUES, **params: Any) -> None:
        self.wait = bool(wait)
        self.checkpoint_margin_s = int(checkpoint_margin_s)
        self.max_requeues = int(max_requeues)
        super().__init__(**params)  # type: ignore[call-arg]
        if self.params.get("tasks_per_node") is None:  # one process per GPU
            self.params["tasks_per_node"] = self.params.get("gpus_per_node") or 1

    # ---- submitting side -----------------------------------------------------------------

    def _executor(self):
        """submitit's executor for this sweep, configured as the plugin's `launch` does."""
        import submitit

        params = dict(self.params)
        init_keys = {"submitit_folder", "max_num_timeout"}
        init = {"folder": params["submitit_folder"]}
        if "max_num_timeout" in params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v
                                      for k, v in params.items() if k not in init_keys})
        return executor

    def _preflight(self) -> None:
        subdir = OmegaConf.to_container(self.config.hydra.sweep, resolve=False).get("subdir")
        if "${now:" in str(subdir):
            raise SubmitError(f"hydra.sweep.subdir={subdir} uses ${{now:...}}: a requeued task must find its run "
                              "dir again; use ${hydra.job.num} (the default)")
        if self._EXECUTOR == "slurm":
            check_time_limit(self.params, self.checkpoint_margin_s)
            check_slurm_resources(self.params)

    def _run_dir(self, sweep_dir: Path, overrides: Sequence[str], num: int) -> Path:
        """Where member `num` writes: sweep dir / hydra.sweep.subdir, as run_job will compute it."""
        subdir = OmegaConf.to_container(self.config.hydra.sweep, resolve=False).get("subdir")
        if subdir == "${hydra.job.num}":
            return sweep_dir / str(num)
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.num = num
            cfg.hydra.job.id = f"job_id_for_{num}"
        return Path(str(cfg.hydra.sweep.dir)).absolute() / str(cfg.hydra.sweep.subdir)

    def _wandb_group(self) -> str | None:
        """The W&B group every run of this sweep logs to (tracker.sweep_group_and_tags), or None."""
        logger = self.config.get("logger") or {}
        if logger.get("name") != "wandb" or logger.get("mode") == "disabled":
            return None
        if logger.get("group"):
            return str(logger.group)
        from hydra.core.hydra_config import HydraConfig

        from reasoning_rl.tracking.tracker import sweep_group_and_tags

        # The runs compute it from their own Hydra config; Hydra sets none in the submitting process
        # of a multirun, so lend it (a copy of) the sweep's for the call.
        hydra_config = HydraConfig.instance()
        previous = hydra_config.cfg
        hydra_config.set_config(copy.deepcopy(self.config))
        try:
            return sweep_group_and_tags()[0]
        finally:
            hydra_config.cfg = previous

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        start = time.monotonic()
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        # Hydra wrote multirun.yaml (the command line, secrets included) just before calling this.
        secrets = secrets_of([o for overrides in job_overrides for o in overrides])
        redact_yaml_files([sweep_dir / "multirun.yaml"], [o for overrides in job_overrides for o in overrides])
        try:
            self._preflight()
            executor = self._executor()
        except SubmitError as exc:
            _fail(str(exc))
        except RuntimeError as exc:  # submitit: no srun here
            _fail(f"cannot submit to {self._EXECUTOR}: {exc}")

        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        members, job_params = [], []
        for i, overrides in enumerate(job_overrides):
            num = initial_job_idx + i
            shown = [redact_override(o) for o in filter_overrides(overrides)]
            log.info(f"\t#{num} : {' '.join(shown)}")
            members.append({"num": num, "overrides": shown, "run_dir": str(self._run_dir(sweep_dir, overrides, num))})
            job_params.append((list(overrides), "hydra.sweep.dir", num, f"job_id_for_{num}", Singleton.get_state()))

        jobs = self._submit(executor, job_params)
        redact_submitit_files(executor.folder, secrets)  # the sbatch script (setup lines, parameters)
        for member, job in zip(members, jobs):
            member["job_id"] = str(job.job_id)
        array_id = str(jobs[0].job_id).split("_", 1)[0]
        group = self._wandb_group()
        record = manifest.new(
            job_name=str(self.config.hydra.job.name), sweep_dir=sweep_dir, executor=self._EXECUTOR,
            array_job_id=array_id, wandb_group=group, members=members,
            launcher=redact_config({**self.params, "wait": self.wait, "checkpoint_margin_s": self.checkpoint_margin_s,
                                    "max_requeues": self.max_requeues}),
            submit_seconds=time.monotonic() - start)
        if initial_job_idx > 0 and manifest.path(sweep_dir).exists():  # a sweeper that launches in batches
            earlier = manifest.load(sweep_dir)
            record["members"] = earlier["members"] + record["members"]
        try:
            manifest.write(record)
        except OSError as exc:
            for job in jobs:
                job.cancel(check=False)
            _fail(f"cannot write {manifest.path(sweep_dir)} ({exc}); the sweep was cancelled")

        n = len(jobs)
        kind = "SLURM array job" if self._EXECUTOR == "slurm" and n > 1 else f"{self._EXECUTOR} job"
        print(f"submitted {n} run{'s' if n > 1 else ''} as {kind} {array_id} in {record['submit_seconds']:.1f} s")
        print(f"sweep dir: {sweep_dir}")
        print(f"W&B group: {group}" if group else "W&B group: none (logger is not wandb)")
        print(f"manifest:  {manifest.path(sweep_dir)}")
        if not self.wait:
            print(f"status:    python -m reasoning_rl.launching.manifest {sweep_dir}"
                  + (f"   (or: squeue -j {array_id}; sacct -j {array_id})" if self._EXECUTOR == "slurm" else ""))
            sys.stdout.flush()
            return [JobReturn(overrides=list(o), working_dir=m["run_dir"], task_name=str(self.config.hydra.job.name),
                              status=JobStatus.COMPLETED, _return_value=m["job_id"])
                    for o, m in zip(job_overrides, members)]
        sys.stdout.flush()
        try:
            return self._wait(jobs, job_overrides, sweep_dir)
        finally:  # every job has ended: their logs can be rewritten
            redact_submitit_files(executor.folder, secrets)

    def _submit(self, executor, job_params: list) -> list:
        """executor.map_array: one sbatch array. If sbatch refuses it, one line and exit 2, and the
        files submitit wrote for it are removed."""
        from submitit.core.utils import JobPaths

        folder = JobPaths.get_first_id_independent_folder(executor.folder)
        before = set(folder.iterdir()) if folder.is_dir() else set()
        stderr, sys.stderr = sys.stderr, io.StringIO()  # submitit prints sbatch's stderr as well
        try:
            return executor.map_array(self, *zip(*job_params))
        except Exception as exc:  # submitit's FailedJobError carries sbatch's stderr
            reasons = [line.strip().removeprefix("sbatch: error: ").removeprefix("Batch job submission failed: ")
                       for line in str(exc).splitlines() if line.strip()]
            for leftover in (set(folder.iterdir()) - before) if folder.is_dir() else ():
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            sys.stderr = stderr
            tool = "sbatch" if self._EXECUTOR == "slurm" else "submitit"
            _fail(f"{tool} refused the sweep, nothing was submitted: {'; '.join(reasons) or type(exc).__name__}")
        finally:
            sys.stderr = stderr

    def _wait(self, jobs, job_overrides, sweep_dir: Path) -> Sequence[JobReturn]:
        """Every member's result on its own; then the manifest and the table; exit 1 if any failed."""
        from submitit.core.utils import UncompletedJobError  # FailedJobError is a subclass

        record = manifest.load(sweep_dir)
        by_job = {m["job_id"]: m for m in record["members"]}
        returns, errors = [], {}
        for job, overrides in zip(jobs, job_overrides):
            member = by_job[str(job.job_id)]
            try:
                ret = job.results()[0]  # a requeued task is still "not done": this keeps waiting
            except UncompletedJobError as exc:
                errors[member["num"]] = first_error_line(str(exc))
                ret = JobReturn(overrides=list(overrides), working_dir=member["run_dir"],
                                status=JobStatus.FAILED, _return_value=exc)
            else:
                if ret.status == JobStatus.FAILED:  # the task raised; run_job kept the exception
                    errors[member["num"]] = f"{type(ret._return_value).__name__}: {ret._return_value}"
            returns.append(ret)
            manifest.refresh(sweep_dir, errors)  # as each member finishes
        record = manifest.refresh(sweep_dir, errors)
        print(manifest.results_table(record))
        failed = [m for m in record["members"] if m["status"] != "completed"]
        if failed:
            print(f"error: {len(failed)} of {len(record['members'])} runs did not complete "
                  f"(runs {', '.join(str(m['num']) for m in failed)}; see {manifest.path(sweep_dir)})", file=sys.stderr)
            sys.exit(1)
        return returns

    # ---- job side --------------------------------------------------------------------------

    def __call__(self, sweep_overrides, job_dir_key, job_num, job_id, singleton_state) -> JobReturn:
        requeue.install_early_handlers()  # before anything else: submitit's handler would sys.exit(-1)
        os.environ[requeue.MAX_REQUEUES_ENV] = str(self.max_requeues)
        if self._EXECUTOR == "slurm":
            distributed.export_torch_env()
        # What the job prints lands in submitit's log files: keep secrets out as it is written.
        secrets = secrets_of(list(sweep_overrides))
        tee = ErrorLineTee(sys.stderr, secrets)
        stdout, sys.stdout = sys.stdout, RedactingStream(sys.stdout, secrets)
        sys.stderr = tee
        try:
            return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)  # type: ignore[misc]
        except Preempted as exc:  # a signal outside the task function (exit_on_user_error converts the rest)
            if not requeue.scheduled():
                raise JobExitError(f"preempted and not requeued: {exc}") from None
            print(f"preempted: {exc}", file=tee)
            sys.exit(Preempted.exit_code)
        except SystemExit as exc:
            code = exc.code
            if code in (None, 0):
                raise
            if code == Preempted.exit_code and requeue.scheduled():
                raise  # requeued at exit: no result file, so a waiting launcher keeps waiting for the rerun
            raise JobExitError(tee.last or f"the job exited with status {code}") from None
        finally:
            sys.stderr, sys.stdout = tee._stream, stdout


class SweepSlurmLauncher(_SweepLauncher, SlurmLauncher):
    _EXECUTOR = "slurm"


class SweepLocalLauncher(_SweepLauncher, LocalLauncher):
    _EXECUTOR = "local"

    def __init__(self, **params: Any) -> None:
        if not params.get("wait", True):
            log.warning("hydra.launcher.wait=false: submitit's local jobs end with this process; waiting anyway")
        super().__init__(**{**params, "wait": True})
