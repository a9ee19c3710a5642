"""Running the jobs as a user would: `python -m reasoning_rl.<job> …` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_job(job: str, *overrides: str, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", f"reasoning_rl.{job}", *overrides],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
