"""`<sweep dir>/sweep.json`: what a sweep submitted, where each run writes, and how each run stands.

Written atomically by the sweep launcher right after the array is submitted, rewritten as runs
finish when the launcher waits (`hydra.launcher.wait=true`), and by `refresh(sweep_dir)` /
`python -m reasoning_rl.launching.manifest <sweep dir>` for a sweep submitted without waiting.

Schema (version 1; readers should ignore keys they do not know):

    {
      "schema": 1,
      "job_name": "train",                  # the Hydra job (train | evaluate)
      "sweep_dir": "/abs/multirun/train/2026-11-28/10-00-00",
      "executor": "slurm",                  # slurm | local
      "array_job_id": "123",                # SLURM array (or single job) id; local: a process id
      "submitted_at": "2026-11-28T10:00:03+00:00",
      "submit_seconds": 1.9,                # preflight checks + sbatch
      "wandb_group": "train-2026-11-28-10-00-00",   # null when logger=none
      "launcher": {...},                    # hydra.launcher params as submitted, secrets redacted
      "updated_at": "2026-11-28T10:30:00+00:00",
      "members": [
        {
          "num": 0,                         # hydra.job.num
          "job_id": "123_0",                # what sacct/scancel/scontrol take
          "overrides": ["hparams.learning_rate=1e-05", "seed=0"],   # secrets redacted
          "run_dir": "/abs/.../0",          # sweep_dir / hydra.sweep.subdir; holds summary.json
          "status": "completed",            # see STATUSES
          "slurm_state": "COMPLETED",       # sacct's state at the last refresh; null if unknown
          "error": null                     # one line when failed / preempted
        }
      ]
    }

A member's status comes from its run dir's status.json (what the job itself reports: running,
completed, failed, preempted) combined with SLURM's state: `pending` (queued, never started),
`running`, `requeued` (preempted, queued again to resume), `completed`, `failed` (also a job that
died without writing status.json: out of memory, time limit, node failure; and a preempted one
that was not requeued), `cancelled`, `submitted` (no information yet), `preempted` (only without
SLURM information, e.g. the local executor). Final: completed, failed, cancelled. A completed run
has `summary.json` in its run dir.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reasoning_rl.tracking.run_dir import write_json_atomic

FILENAME = "sweep.json"
SCHEMA = 1
STATUSES = ("submitted", "pending", "running", "requeued", "preempted", "completed", "failed", "cancelled")
FINAL = {"completed", "failed", "cancelled"}
# sacct states that mean "not finished" (submitit's list) and how they read here.
_WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "PREEMPTED"}
_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "RESIZING", "SIGNALING", "STAGE_OUT"}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def path(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / FILENAME


def load(sweep_dir: str | Path) -> dict:
    p = path(sweep_dir)
    if not p.is_file():
        raise FileNotFoundError(f"no {FILENAME} in {sweep_dir}: not a sweep submitted by the sweep launcher")
    return json.loads(p.read_text())


def write(manifest: Mapping[str, Any]) -> Path:
    p = path(manifest["sweep_dir"])
    write_json_atomic(p, {**manifest, "updated_at": now()})
    return p


def new(*, job_name: str, sweep_dir: Path, executor: str, array_job_id: str, wandb_group: str | None,
        launcher: Mapping[str, Any], members: Iterable[Mapping[str, Any]], submit_seconds: float) -> dict:
    return {
        "schema": SCHEMA,
        "job_name": job_name,
        "sweep_dir": str(sweep_dir),
        "executor": executor,
        "array_job_id": array_job_id,
        "submitted_at": now(),
        "submit_seconds": round(submit_seconds, 2),
        "wandb_group": wandb_group,
        "launcher": dict(launcher),
        "members": [{"status": "submitted", "slurm_state": None, "error": None, **m} for m in members],
    }


def read_run_status(run_dir: str | Path) -> dict:
    """The run dir's status.json ({} when the job has not started or died before writing it)."""
    try:
        return json.loads((Path(run_dir) / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def member_status(run_status: Mapping[str, Any], slurm_state: str | None) -> tuple[str, str | None]:
    """(status, error line) from the run's own status.json and SLURM's state of its task."""
    own = run_status.get("status")
    message = run_status.get("error") or run_status.get("message")
    state = (slurm_state or "").upper()
    if state in _WAITING:
        return ("requeued" if own == "preempted" else "pending"), (message if own == "preempted" else None)
    if state in _RUNNING:
        if own in ("completed", "failed"):  # the job reported its end and is exiting
            return own, (message if own == "failed" else None)
        return "running", None
    if state == "CANCELLED":
        return ("completed", None) if own == "completed" else ("cancelled", "cancelled (scancel, or by SLURM)")
    if state:  # finished: trust what the job said about itself, else what SLURM says
        if own in ("completed", "failed"):
            return own, (None if own == "completed" else message)
        if own == "preempted":  # and SLURM did not start it again
            return "failed", f"preempted and not requeued: {message}"
        if state == "COMPLETED":
            return "failed", "the task ended without a status.json"
        return "failed", f"SLURM state {state} (the job was killed before it could report: see its .submitit log)"
    # No SLURM information (local executor, or sacct does not know the job any more).
    if own:
        return own, (None if own in ("completed", "running") else message)
    return "submitted", None


def sacct_states(job_id: str) -> dict[str, str]:
    """{task id: state} of a SLURM (array) job from sacct; {} when sacct cannot tell."""
    try:
        proc = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", str(job_id)],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_sacct(proc.stdout) if proc.returncode == 0 else {}


def parse_sacct(text: str) -> dict[str, str]:
    """`sacct -n -X -P -o JobID,State` lines -> {task id: state}; a pending range '7_[2-5%2]' is expanded."""
    states: dict[str, str] = {}
    for line in text.splitlines():
        if "|" not in line:
            continue
        jid, state = line.split("|", 1)
        state = state.split()[0] if state.strip() else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
        m = re.fullmatch(r"(\d+)_\[([^\]]*)\]", jid)
        if m:  # array tasks that have not started yet
            for part in m.group(2).split("%", 1)[0].split(","):
                lo, _, hi = part.partition("-")
                for task in range(int(lo), int(hi or lo) + 1):
                    states.setdefault(f"{m.group(1)}_{task}", state)
        else:
            states[jid] = state
    return states


def refresh(sweep_dir: str | Path, error_lines: Mapping[int, str] | None = None) -> dict:
    """Re-read every member's status (status.json + sacct) and rewrite sweep.json; returns it.

    error_lines: {member num: error line} learned elsewhere (the waiting launcher's submitit results),
    used when the run dir does not say why a run failed.
    """
    manifest = load(sweep_dir)
    states = sacct_states(manifest["array_job_id"]) if manifest.get("executor") == "slurm" else {}
    for member in manifest["members"]:
        slurm_state = states.get(member["job_id"])
        status, error = member_status(read_run_status(member["run_dir"]), slurm_state)
        extra = (error_lines or {}).get(member["num"])
        if status == "submitted" and extra:  # local executor, job failed before writing status.json
            status = "failed"
        member.update(status=status, slurm_state=slurm_state or member.get("slurm_state"),
                      error=error or (extra if status in ("failed", "preempted", "cancelled") else None))
    write(manifest)
    return manifest


def summary_metrics(run_dir: str | Path) -> dict[str, float]:
    """{metric: mean} from the run's summary.json ({} when the run has none)."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: v["mean"] for k, v in summary.items() if isinstance(v, Mapping) and "mean" in v}


def _table_k(metrics: Sequence[Mapping[str, float]], preferred: int = 8) -> int:
    ks = {int(m.group(1)) for ms in metrics for key in ms if (m := re.fullmatch(r"pass@(\d+)", key))}
    return preferred if preferred in ks or not ks else max(ks)


def results_table(manifest: Mapping[str, Any]) -> str:
    """One line per run: run dir (relative to the sweep dir), status, pass@K and maj@K, overrides, error."""
    members = manifest["members"]
    metrics = [summary_metrics(m["run_dir"]) for m in members]
    k = _table_k(metrics)
    sweep_dir = Path(manifest["sweep_dir"])

    def rel(p: str) -> str:
        try:
            return str(Path(p).relative_to(sweep_dir))
        except ValueError:
            return p

    def num(ms: Mapping[str, float], key: str) -> str:
        return f"{ms[key]:.3f}" if key in ms else "-"

    header = ("run", "job", "status", f"pass@{k}", f"maj@{k}", "overrides", "error")
    rows = [(rel(m["run_dir"]), m["job_id"], m["status"], num(ms, f"pass@{k}"), num(ms, f"maj@{k}"),
             " ".join(m["overrides"]) or "-", (m.get("error") or "").splitlines()[0][:160] if m.get("error") else "")
            for m, ms in zip(members, metrics)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = [f"sweep {sweep_dir} · {manifest['executor']} job {manifest['array_job_id']}"
             + (f" · W&B group {manifest['wandb_group']}" if manifest.get("wandb_group") else "")]
    for row in [header, *rows]:
        lines.append("  ".join([*(c.ljust(w) for c, w in zip(row, widths)), row[-1]]).rstrip())
    counts: dict[str, int] = {}
    for m in members:
        counts[m["status"]] = counts.get(m["status"], 0) + 1
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """python -m reasoning_rl.launching.manifest SWEEP_DIR: refresh sweep.json and print the table."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m reasoning_rl.launching.manifest SWEEP_DIR", file=sys.stderr)
        return 2
    try:
        manifest = refresh(args[0])
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(results_table(manifest))
    return 1 if any(m["status"] in ("failed", "cancelled") for m in manifest["members"]) else 0


if __name__ == "__main__":
    sys.exit(main())
