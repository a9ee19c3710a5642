"""Sweeps through the real local SLURM cluster of launch/slurm_local.sh, and the launcher profiles.

No mocks: `hydra/launcher=slurm_local` submits with sbatch, the jobs run under slurmd, and the test
reads their states back from slurmdbd with sacct. Without a cluster the SLURM test skips, except in
CI (REASONING_RL_CI=1), where a missing cluster is a failure: .ci/run starts it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
START_HINT = "no local SLURM: bash launch/slurm_local.sh start"
SWEEP_TIMEOUT_S = 300
USABLE_NODE_STATES = {"idle", "mix", "mixed", "alloc", "allocated", "comp", "completing"}


def _cluster_problem() -> str | None:
    """Why the local cluster can't take jobs, or None when it can."""
    if shutil.which("sinfo") is None or shutil.which("sacct") is None:
        return "sinfo/sacct not on PATH"
    try:
        sinfo = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=15)
        # submitit reads job states with sacct: the accounting daemon must answer too.
        sacct = subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "sinfo/sacct did not answer within 15 s"
    if sinfo.returncode != 0:
        return f"sinfo failed: {sinfo.stderr.strip()}"
    if sacct.returncode != 0:
        return f"sacct failed: {sacct.stderr.strip()}"
    states = set(sinfo.stdout.split())
    if not states & USABLE_NODE_STATES:
        return f"no usable node (sinfo states: {sorted(states) or 'none'})"
    return None


@pytest.fixture(scope="module")
def slurm_cluster():
    problem = _cluster_problem()
    if problem:
        message = f"{START_HINT} ({problem})"
        if os.environ.get("REASONING_RL_CI") == "1":
            pytest.fail(f"CI must run the SLURM tests: {message}", pytrace=False)
        pytest.skip(message)


def _sacct_states(job_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", job_id],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    rows = (line.split("|", 1) for line in out.splitlines() if "|" in line)
    return {jid: state.split()[0] for jid, state in rows}  # "CANCELLED by 0" → CANCELLED


def _job_ids(sweep: Path) -> set[str]:
    """The SLURM job ids of a sweep: submitit keeps one folder per array task, named <jobid>_<task>."""
    folder = sweep / ".submitit"
    if not folder.is_dir():
        return set()
    return {m.group(1) for d in folder.iterdir() if (m := re.fullmatch(r"(\d+)_\d+", d.name))}


def _submitit_logs(sweep: Path) -> str:
    """The tail of every task's stderr, for a readable failure."""
    parts = []
    for err in sorted((sweep / ".submitit").glob("*/*_log.err")):
        parts.append(f"--- {err.relative_to(sweep)}\n" + "\n".join(err.read_text().splitlines()[-20:]))
    return "\n".join(parts)


@pytest.mark.slurm
def test_two_point_sweep_is_one_array_job_on_slurm(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable, "-m", "reasoning_rl.evaluate", "-m",
        "debug=smoke", "logger=none", "seed=0,1",
        "hydra/launcher=slurm_local", f"hydra.sweep.dir={sweep}",
        # Smaller than smoke: this tests the launch path, not the model; the two tasks share the
        # 2 cores of a CI machine. Keeps the test well under a minute there.
        "dataset.limit=2", "eval.num_samples=2", "eval.ks=[1,2]", "generation.max_new_tokens=8",
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # sbatch copies this environment into the jobs, so they import the same reasoning_rl.
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=SWEEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        jobs = sorted(_job_ids(sweep))
        if jobs:  # don't leave them holding the node for the next test
            subprocess.run(["scancel", *jobs], check=False)
        pytest.fail(f"sweep still running after {SWEEP_TIMEOUT_S}s (jobs {jobs}; squeue/sinfo -R tell why)\n"
                    f"{_submitit_logs(sweep)}")
    assert proc.returncode == 0, (
        f"sweep exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n{_submitit_logs(sweep)}"
    )

    job_ids = _job_ids(sweep)
    assert len(job_ids) == 1, f"expected one sbatch array for the sweep, got jobs {sorted(job_ids)}"
    job = job_ids.pop()

    # slurmctld hands finished jobs to slurmdbd asynchronously: give accounting a few seconds.
    expected = {f"{job}_0": "COMPLETED", f"{job}_1": "COMPLETED"}
    deadline = time.monotonic() + 30
    while (states := _sacct_states(job)) != expected and time.monotonic() < deadline:
        time.sleep(1)
    assert states == expected, f"sacct for job {job}: {states}"

    for n in (0, 1):
        assert (sweep / str(n) / "summary.json").is_file(), f"no summary.json in {sweep / str(n)}"


# --- The launcher profiles compose, and read the cluster from the environment (no cluster needed).

def _launcher(name: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    # Resolve everything but the fields that need a running Hydra job (name, submitit_folder).
    return {k: OmegaConf.select(cfg.hydra.launcher, k) if k not in ("name", "submitit_folder") else v
            for k, v in launcher.items()}


@pytest.mark.parametrize("name", ["slurm", "slurm_local", "local"])
def test_launcher_profile_composes(name):
    launcher = _launcher(name)
    kind = "LocalLauncher" if name == "local" else "SlurmLauncher"
    assert launcher["_target_"].endswith(kind)
    assert launcher["submitit_folder"].startswith("${hydra.sweep.dir}/")


def test_slurm_profile_reads_the_cluster_from_the_environment(monkeypatch):
    for var in ("SLURM_PARTITION", "SLURM_ACCOUNT", "SLURM_QOS", "SLURM_CONSTRAINT", "SLURM_EXCLUDE"):
        monkeypatch.delenv(var, raising=False)
    unset = _launcher("slurm")
    assert unset["partition"] is None and unset["account"] is None and unset["qos"] is None

    monkeypatch.setenv("SLURM_PARTITION", "gpu")
    monkeypatch.setenv("SLURM_ACCOUNT", "proj42")
    monkeypatch.setenv("SLURM_QOS", "high")
    launcher = _launcher("slurm")
    assert (launcher["partition"], launcher["account"], launcher["qos"]) == ("gpu", "proj42", "high")


def test_slurm_local_profile_ignores_a_real_clusters_environment(monkeypatch):
    monkeypatch.setenv("SLURM_PARTITION", "gpu")
    monkeypatch.setenv("SLURM_ACCOUNT", "proj42")
    launcher = _launcher("slurm_local")
    assert launcher["partition"] == "debug" and launcher["account"] is None
    assert not launcher["gpus_per_node"] and launcher["cpus_per_task"] == 1
