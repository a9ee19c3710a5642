"""Running the jobs as a user would: `python -m reasoning_rl.<job> …` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]

# The end-to-end tests check the machinery (curves, checkpoints, resume, compare), not a data set: on the
# learn task a sequence is ~40 tokens instead of GSM8K's ~250, so a smoke step costs seconds, not half a
# minute. Tests about GSM8K, ARC or the default data say so and leave this out.
SHORT_TASK = ["dataset=chain_sum", "prompt=short", "generation.max_new_tokens=12"]


def run_job(job: str, *overrides: str, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", f"reasoning_rl.{job}", *overrides],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def built_once(tmp_path_factory, name: str,
               build: Callable[[Path], subprocess.CompletedProcess]) -> tuple[Path, SimpleNamespace]:
    """build(folder) runs once per test session, also under pytest-xdist (`-n 2`), where each worker has
    its own basetemp under one shared parent: the first worker to ask builds, the others wait and reuse."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    record = folder.with_name(f"{name}.result.json")
    with FileLock(str(folder) + ".lock"):
        if not record.exists():
            result = build(folder)
            record.write_text(json.dumps({"returncode": result.returncode, "stdout": result.stdout,
                                          "stderr": result.stderr}))
    return folder, SimpleNamespace(**json.loads(record.read_text()))


def python_warnings(stderr: str) -> list[str]:
    """The `…Warning: …` lines Python's warnings module printed: a clean run prints none."""
    import re

    return [line for line in stderr.splitlines() if re.search(r"\b\w*Warning: ", line)]
