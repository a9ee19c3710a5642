"""What every bench shares: the machine description, the result JSON, a small table, and a child
process whose peak memory is watched.

Every figure a bench reports is a ratio against a baseline measured in the same run on the same
machine; absolute times are kept in the JSON only as context (on a shared CPU they move with the load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
# The same quiet environment the tests use: offline, no tokenizer threads fighting torch's.
CHILD_ENV = {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
             "OMP_WAIT_POLICY": "PASSIVE"}


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "load_avg_at_start": load,
        "note": "shared machine: other jobs may run beside the bench; compare ratios, not absolute times",
    }


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--small", action="store_true", help="CI-sized run (minutes, not tens of minutes)")
    p.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/<name>.json)")
    return p


def write_result(name: str, result: Mapping[str, Any], out: Path | None = None) -> Path:
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"bench": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **result}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def goal_text(value: float, goal: float, higher_is_better: bool) -> str:
    met = value >= goal if higher_is_better else value <= goal
    return f"{'met' if met else 'missed'} ({'>=' if higher_is_better else '<='} {goal:g})"


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_watched(cmd: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
                poll_s: float = 0.2) -> dict[str, Any]:
    """Run a command; its exit status, output, wall time, and peak RSS of its whole process tree (psutil
    polling every poll_s: a peak shorter than that can be missed)."""
    full_env = {**os.environ, **CHILD_ENV, **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    peak = 0
    stop = threading.Event()

    def watch():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            stop.wait(poll_s)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    finally:
        stop.set()
        watcher.join()
    return {"returncode": proc.returncode, "stdout": stdout, "stderr": stderr,
            "seconds": time.perf_counter() - start, "peak_rss_bytes": peak}


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def require_ok(run: Mapping[str, Any], what: str) -> None:
    if run["returncode"] != 0:
        tail = "\n".join(run["stderr"].strip().splitlines()[-15:])
        raise SystemExit(f"{what} failed with exit status {run['returncode']}:\n{tail}")
