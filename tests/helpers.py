"""Running the jobs as a user would: `python -m reasoning_rl.<job> …` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
