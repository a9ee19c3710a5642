"""Run `python -m reasoning_rl.<job> ARGS` many times without paying Python's start-up each time.

A forkserver process imports the jobs' modules once; every run is a fork of it that executes the job
module as `__main__` (exactly what `python -m` runs) with its stdout/stderr in files, so a run's exit
status, output and files are those of the real command. Forking a clean server (not pytest, which may
have used torch's thread pools) keeps the children safe.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import resource
import runpy
import signal
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import reasoning_rl.evaluate  # noqa: F401  (imported once, in the server, with the job bodies)
import reasoning_rl.evaluate_job  # noqa: F401
import reasoning_rl.train  # noqa: F401
import reasoning_rl.train_job  # noqa: F401


@dataclass
class JobResult:
    returncode: int
    stdout: str
    stderr: str


def _child(job: str, args: Sequence[str], env: Mapping[str, str], data_dir: str | None, out: str,
           max_file_bytes: int | None) -> None:
    for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(os.open(f"{out}.{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    if max_file_bytes is not None:  # a full disk, as far as the job can tell: writes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, resource.RLIM_INFINITY))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process instead
    os.environ.update(env)
    if env.get("PYTHONPATH"):  # where `python -m` would look for packages first
        sys.path[:0] = env["PYTHONPATH"].split(os.pathsep)
        importlib.invalidate_caches()
    if data_dir:  # the bundled data files, read from a (spoiled) copy
        from reasoning_rl.data import registry

        registry.bundled_dir = lambda name: Path(data_dir) / name
    sys.argv = [f"{job}.py", *args]
    sys.modules.pop(f"reasoning_rl.{job}", None)  # runpy warns when the module it runs as __main__ is loaded
    try:
        runpy.run_module(f"reasoning_rl.{job}", run_name="__main__", alter_sys=True)
    except SystemExit:
        raise
    except BaseException:  # what the interpreter does with an uncaught exception
        traceback.print_exc()
        sys.stderr.flush()
        sys.exit(1)


def run_forked(job: str, *args: str, out: Path, env: Mapping[str, str] | None = None,
               data_dir: str | None = None, max_file_bytes: int | None = None, timeout: float = 300) -> JobResult:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    env = {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    process = context.Process(target=_child, args=(job, list(args), env, data_dir, str(out), max_file_bytes))
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
        return JobResult(-9, "", f"timed out after {timeout} s")
    read = lambda name: Path(f"{out}.{name}").read_text() if Path(f"{out}.{name}").exists() else ""  # noqa: E731
    return JobResult(process.exitcode, read("stdout"), read("stderr"))
