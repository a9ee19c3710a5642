"""Sweeps through the real local SLURM cluster of launch/slurm_local.sh, and the launcher profiles.

No mocks: `hydra/launcher=slurm_local` submits with sbatch, the jobs run under slurmd, and the tests
read their states back from slurmdbd with sacct. Without a cluster the SLURM tests skip, except in
CI (REASONING_RL_CI=1), where a missing cluster is a failure: .ci/run starts it.

Sizes are the smallest that still run the real jobs: the cluster is a 2-core machine, and array
tasks share it (cpus_per_task=1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from reasoning_rl.launching import manifest as sweep_manifest

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
START_HINT = "no local SLURM: bash launch/slurm_local.sh start"
SWEEP_TIMEOUT_S = 300
USABLE_NODE_STATES = {"idle", "mix", "mixed", "alloc", "allocated", "comp", "completing"}
ENV = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# The evaluate job, as small as it gets: this tests the launch path, not the model.
TINY_EVAL = ["debug=smoke", "dataset.limit=2", "eval.num_samples=2", "eval.ks=[1,2]", "generation.max_new_tokens=8"]


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


def _sacct_states(job_id: str, duplicates: bool = False) -> list[tuple[str, str]]:
    """(task, state) rows; with duplicates, also the earlier runs of a requeued task."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", *(["-D"] if duplicates else []), "-o", "JobID,State", "-j", job_id],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    rows = (line.split("|", 1) for line in out.splitlines() if "|" in line)
    return [(jid, state.split()[0]) for jid, state in rows]  # "CANCELLED by 0" → CANCELLED


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


def _sweep_cmd(job: str, sweep: Path, *overrides: str) -> list[str]:
    # sbatch copies this environment into the jobs, so they import the same reasoning_rl.
    return [sys.executable, "-m", f"reasoning_rl.{job}", "-m", "hydra/launcher=slurm_local",
            f"hydra.sweep.dir={sweep}", *overrides]


def _submit(job: str, sweep: Path, *overrides: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(_sweep_cmd(job, sweep, *overrides), cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def _array_id(stdout: str) -> str:
    m = re.search(r"as SLURM array job (\d+)", stdout)
    assert m, f"no array job id in the submit output:\n{stdout}"
    return m.group(1)


def _cancel(sweep: Path) -> None:
    jobs = sorted(_job_ids(sweep))
    if jobs:  # don't leave them holding the node for the next test
        subprocess.run(["scancel", *jobs], check=False)


def _wait_for_sweep(sweep: Path, timeout: float = SWEEP_TIMEOUT_S) -> dict:
    """Refresh sweep.json (status.json + sacct) until every member has finished; the manifest."""
    deadline = time.monotonic() + timeout
    while True:
        record = sweep_manifest.refresh(sweep)
        if all(m["status"] in sweep_manifest.FINAL for m in record["members"]):
            return record
        if time.monotonic() > deadline:
            _cancel(sweep)
            pytest.fail(f"sweep still running after {timeout:.0f}s: "
                        f"{[(m['job_id'], m['status'], m['slurm_state']) for m in record['members']]}\n"
                        f"{_submitit_logs(sweep)}")
        time.sleep(2)


def _wait_for_accounting(job: str, expected: dict[str, str], timeout: float = 30) -> dict[str, str]:
    # slurmctld hands finished jobs to slurmdbd asynchronously: give accounting a few seconds.
    deadline = time.monotonic() + timeout
    while (states := dict(_sacct_states(job))) != expected and time.monotonic() < deadline:
        time.sleep(1)
    return states


def _wandb_runs(run_dir: Path) -> list[dict]:
    """The `run` records (id, group, tags) of a run dir's offline W&B runs, read from the
    run-<id>.wandb files themselves: what W&B receives on `wandb sync`. Those files are LevelDB-style
    logs (7-byte header; records of crc32, length, type in 32 KiB blocks) of protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    runs = []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        data, pos, pending, chunks = path.read_bytes(), 7, b"", []
        while pos + 7 <= len(data):
            if 32768 - pos % 32768 < 7:  # block trailer
                pos += 32768 - pos % 32768
                continue
            _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
            if kind == 0 and length == 0:
                break
            chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
            if kind == 1:
                chunks.append(chunk)
            elif kind in (2, 3):
                pending = (pending if kind == 3 else b"") + chunk
            elif kind == 4:
                chunks.append(pending + chunk)
        for chunk in chunks:
            record = pb.Record()
            record.ParseFromString(chunk)
            if record.WhichOneof("record_type") == "run":
                runs.append({"id": record.run.run_id, "group": record.run.run_group, "tags": list(record.run.tags),
                             "dir": path.parent.name})
                break
    return runs


# --- (a) one array, all finish, one W&B group

@pytest.mark.slurm
def test_four_point_sweep_is_one_array_in_one_wandb_group(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    proc = _submit("evaluate", sweep, *TINY_EVAL, "logger=wandb", "seed=0,1,2,3")
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    job = _array_id(proc.stdout)
    record = _wait_for_sweep(sweep)
    assert _job_ids(sweep) == {job}, f"expected one sbatch array for the sweep, got jobs {sorted(_job_ids(sweep))}"

    expected = {f"{job}_{n}": "COMPLETED" for n in range(4)}
    states = _wait_for_accounting(job, expected)
    assert states == expected, f"sacct for job {job}: {states}\n{_submitit_logs(sweep)}"

    assert record["array_job_id"] == job and record["job_name"] == "evaluate"
    assert [(m["num"], m["job_id"], m["run_dir"], m["status"]) for m in record["members"]] == [
        (n, f"{job}_{n}", str(sweep / str(n)), "completed") for n in range(4)]
    assert all(f"seed={n}" in m["overrides"] for n, m in enumerate(record["members"]))
    group = record["wandb_group"]
    assert group and group in proc.stdout and str(sweep) in proc.stdout
    for n in range(4):
        run_dir = sweep / str(n)
        assert (run_dir / "summary.json").is_file(), f"no summary.json in {run_dir}"
        [run] = _wandb_runs(run_dir)
        assert run["group"] == group, f"run {n} logged to W&B group {run['group']!r}, the sweep's is {group!r}"
        assert f"seed={n}" in run["tags"] and run["id"] == (run_dir / "wandb_run_id").read_text()


# --- (b) the submit command does not wait for the jobs

@pytest.mark.slurm
def test_submit_returns_while_the_sweep_runs(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    start = time.monotonic()
    proc = _submit("evaluate", sweep, *TINY_EVAL, "logger=none", "seed=0,1,2,3,4,5,6,7")
    submit_s = time.monotonic() - start
    try:
        assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        job = _array_id(proc.stdout)
        print(f"\n8-point sweep submitted in {submit_s:.1f} s (command start to exit; "
              f"launcher's own part {sweep_manifest.load(sweep)['submit_seconds']} s)")
        assert submit_s < 30, f"submitting took {submit_s:.1f} s"
        record = sweep_manifest.refresh(sweep)
        assert len(record["members"]) == 8 and record["array_job_id"] == job
        # Evaluating takes ~20 s a task and the node runs two at once: most are still queued.
        unfinished = [m for m in record["members"] if m["status"] not in sweep_manifest.FINAL]
        assert len(unfinished) >= 6, [(m["job_id"], m["status"]) for m in record["members"]]
    finally:
        _cancel(sweep)
    record = _wait_for_sweep(sweep, timeout=60)
    assert {m["status"] for m in record["members"]} <= {"cancelled", "completed"}


# --- (c) a failing member fails alone; wait=true prints the table

@pytest.mark.slurm
def test_one_failing_member_fails_alone(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    overrides = [o for o in TINY_EVAL if not o.startswith("dataset.limit")]
    try:
        proc = _submit("evaluate", sweep, *overrides, "logger=none", "dataset.limit=2,-1",
                       "hydra.launcher.wait=true", timeout=SWEEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _cancel(sweep)
        pytest.fail(f"wait=true sweep still running after {SWEEP_TIMEOUT_S}s\n{_submitit_logs(sweep)}")
    assert proc.returncode == 1, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stderr.strip().splitlines()[-1].startswith("error: 1 of 2 runs did not complete")
    table = proc.stdout[proc.stdout.index("run "):]
    assert re.search(r"^0\s+\S+\s+completed\s+0\.\d+", table, re.M), table
    assert re.search(r"^1\s+\S+\s+failed\s+-\s+-.*dataset\.limit must be a positive integer", table, re.M), table

    record = sweep_manifest.load(sweep)
    assert [m["status"] for m in record["members"]] == ["completed", "failed"]
    assert "dataset.limit must be a positive integer" in record["members"][1]["error"]
    assert (sweep / "0" / "summary.json").is_file() and not (sweep / "1" / "summary.json").exists()


# --- (d) preemption: USR2 -> checkpoint -> requeue -> resume, same run dir and W&B run

TINY_TRAIN = ["algorithm=grpo", "debug=smoke", "algorithm.rewards=[correctness,parsable_answer]",
              "algorithm.reward_weights=[1.0,0.5]", "hparams.learning_rate=1e-3", "algorithm.args.num_generations=2",
              "eval.limit=2", "eval.num_samples=2", "eval.ks=[1,2]", "eval.every_steps=0",
              "generation.max_new_tokens=8", "hparams.max_steps=3", "checkpoint.every_steps=1", "logger=wandb"]


def _final_state(run_dir: Path):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary = json.loads((run_dir / "summary.json").read_text())
    train_steps = [r["step"] for r in rows if "train/loss" in r]
    eval_steps = [r["step"] for r in rows if "eval/pass@2" in r]
    return train_steps, eval_steps[-1], {k: v["mean"] for k, v in summary.items()}


@pytest.mark.slurm
def test_preempted_task_requeues_and_resumes_into_the_same_run(slurm_cluster, tmp_path):
    """Two identical trainings in one array (wait=true); task 1 gets SLURM's preemption signal after
    its first checkpoint. It must requeue itself, resume, and end like task 0, in the same W&B run."""
    sweep = tmp_path / "sweep"
    start, events = time.monotonic(), []
    stamp = lambda name: events.append((name, time.monotonic() - start))  # noqa: E731
    proc = subprocess.Popen(
        _sweep_cmd("train", sweep, *TINY_TRAIN, "logger.run_name=straight,preempted", "hydra.launcher.wait=true"),
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = sweep / "1"
        checkpoint = run / "checkpoints" / "checkpoint-1" / "COMPLETE"
        deadline = time.monotonic() + 600
        while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert checkpoint.exists(), f"no checkpoint before the signal\n{_submitit_logs(sweep)}"
        stamp("checkpoint-1")
        job = sweep_manifest.load(sweep)["array_job_id"]
        wandb_id = (run / "wandb_run_id").read_text()
        subprocess.run(["scancel", "--signal=USR2", f"{job}_1"], check=True, timeout=30)
        stamp("USR2 sent")

        seen = []
        while proc.poll() is None and time.monotonic() < deadline + 300:
            state = dict(_sacct_states(f"{job}_1")).get(f"{job}_1")
            status = json.loads((run / "status.json").read_text()).get("status")
            if not seen or seen[-1] != (state, status):
                seen.append((state, status))
                stamp(f"{state}/{status}")
            time.sleep(1)
        out, err = proc.communicate(timeout=60)
        stamp("sweep done")
    except BaseException:
        proc.kill()
        _cancel(sweep)
        raise
    print("\npreemption timeline (sacct state / status.json): " + ", ".join(f"{n} +{s:.0f}s" for n, s in events))
    assert proc.returncode == 0, f"{out[-3000:]}\n{err[-3000:]}\n{_submitit_logs(sweep)}"
    assert len(re.findall(r"completed", out)) >= 2, out

    # SLURM ran task 1 twice: the first run ended REQUEUED, the second COMPLETED. The accounting
    # database may trail the task's end by a few seconds on a busy machine: wait for a final state.
    settle = time.monotonic() + 60
    while True:
        runs = [state for jid, state in _sacct_states(f"{job}_1", duplicates=True)]
        if (runs and runs[-1] not in ("RUNNING", "PENDING", "COMPLETING")) or time.monotonic() > settle:
            break
        time.sleep(1)
    assert runs.count("REQUEUED") >= 1 and runs[-1] == "COMPLETED", runs
    log = (sweep / ".submitit" / f"{job}_1" / f"{job}_1_0_log.err").read_text()
    assert "preempted: checkpoint saved" in log and f"task {job}_1 requeued" in log, log[-3000:]

    # It resumed: every step once, and the same end as the uninterrupted task 0.
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert _final_state(run) == _final_state(sweep / "0")
    assert _final_state(run)[0] == [1, 2, 3]
    # ... in the same W&B run: one id, two offline segments of it, one group.
    assert (run / "wandb_run_id").read_text() == wandb_id
    segments = _wandb_runs(run)
    assert len(segments) == 2 and {s["id"] for s in segments} == {wandb_id}, segments
    assert {s["group"] for s in segments} == {sweep_manifest.load(sweep)["wandb_group"]}


# --- (e) bad input: one line, exit 2, nothing submitted

@pytest.mark.slurm
@pytest.mark.parametrize("override,message", [
    ("hydra.launcher.partition=nope", "partition 'nope' does not exist on this cluster (partitions: debug)"),
    ("hydra.launcher.gpus_per_node=1", "asks for GPUs, but partition debug has none"),
    ("hydra.launcher.timeout_min=3", "too short to checkpoint"),
    ("hydra.launcher.mem_gb=100000", "sbatch refused the sweep, nothing was submitted"),  # sbatch's own refusal
])
def test_bad_input_is_refused_at_submit(slurm_cluster, tmp_path, override, message):
    sweep = tmp_path / "sweep"
    name = f"bad-input-{uuid.uuid4().hex[:8]}"
    proc = _submit("evaluate", sweep, "logger=none", "seed=0,1", override, f"hydra.launcher.name={name}")
    assert proc.returncode == 2, f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not (sweep / "sweep.json").exists()
    assert not (sweep / ".submitit").exists() or not any((sweep / ".submitit").iterdir())
    submitted = subprocess.run(["sacct", "-n", "-X", "-o", "JobID", "--name", name, "-S", "now-10minutes"],
                               capture_output=True, text=True, timeout=30).stdout.split()
    assert submitted == [], f"jobs submitted despite the error: {submitted}"


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


def test_sweep_launcher_params_and_one_task_per_gpu():
    from hydra_plugins.reasoning_rl_launcher import SweepSlurmLauncher

    launcher = _launcher("slurm")
    assert launcher["wait"] is False and launcher["tasks_per_node"] is None and launcher["max_requeues"] > 0
    params = {k: v for k, v in launcher.items() if k not in ("_target_", "name", "submitit_folder")}
    four = SweepSlurmLauncher(**{**params, "gpus_per_node": 4, "submitit_folder": "x"})
    assert four.params["tasks_per_node"] == 4 and four.wait is False
    assert "wait" not in four.params  # ours: never handed to submitit
    cpu = SweepSlurmLauncher(**{**params, "gpus_per_node": None, "submitit_folder": "x"})
    assert cpu.params["tasks_per_node"] == 1


@pytest.mark.parametrize("preset,keys", [
    ("lr_bs", {"hparams.learning_rate", "hparams.per_device_train_batch_size"}),
    ("algorithms", {"algorithm"}),
    ("seeds", {"seed"}),
])
def test_sweep_presets_set_the_sweeper_params(preset, keys):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"sweep={preset}"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    assert set(params) == keys and all("," in str(v) for v in params.values())
