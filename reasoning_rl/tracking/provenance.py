"""What is needed to reproduce a run: code version, package versions, seed, host, command."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from reasoning_rl.tracking.redact import redact_override

PACKAGES = (
    "reasoning-rl", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "hydra-core",
    "hydra-submitit-launcher", "submitit", "wandb", "math-verify", "numpy", "vllm",
)


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(path: Path | None = None) -> dict[str, object]:
    """sha and dirty flag of the repository the package was imported from (None outside git)."""
    cwd = path or Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if sha else None
    return {"sha": sha, "dirty": bool(status) if status is not None else None}


def collect(seed: int, overrides: list[str]) -> dict[str, object]:
    import torch

    return {
        "git": git_state(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "seed": seed,
        "overrides": [redact_override(o) for o in overrides],
        "argv": [redact_override(a) for a in sys.argv],
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
