"""The sweep launcher's pure parts, without a cluster: SLURM -> torch.distributed mapping, the
accelerate command, manifest statuses, requeue decisions, submit-time checks; and a GPU smoke test
for a node with >= 2 GPUs. The real-SLURM behaviour is in tests/test_slurm.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from reasoning_rl.launching import distributed, manifest, requeue
from reasoning_rl.launching.job_output import first_error_line
from reasoning_rl.launching.preflight import SubmitError, check_time_limit, min_timeout_min

SLURM_TASK = {
    "SLURM_JOB_ID": "4711", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8",
    "SLURM_NODEID": "1", "SLURM_JOB_NUM_NODES": "2", "SLURM_TASKS_PER_NODE": "4(x2)",
    "SLURM_JOB_NODELIST": "gpu[017-018]", "SLURM_GPUS_ON_NODE": "4",
}


# --- distributed.py

@pytest.mark.parametrize("nodelist,first", [
    ("gpu017", "gpu017"),
    ("gpu[017-018]", "gpu017"),
    ("gpu[3,5-7],cpu1", "gpu3"),
    ("a1,b2", "a1"),
    ("rack[2-3]-n[01-04],x9", "rack2-n01"),
])
def test_first_host_of_a_nodelist(nodelist, first):
    assert distributed.first_host(nodelist) == first


def test_torch_env_from_a_slurm_task():
    env = distributed.torch_env(SLURM_TASK)
    assert env == {
        "RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4", "NODE_RANK": "1",
        "MASTER_ADDR": "gpu017", "MASTER_PORT": str(20000 + 4711 % 10000),
    }
    # Every task of the job computes the same rendezvous, whatever its rank.
    other = distributed.torch_env({**SLURM_TASK, "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"})
    assert (other["MASTER_ADDR"], other["MASTER_PORT"]) == (env["MASTER_ADDR"], env["MASTER_PORT"])


@pytest.mark.parametrize("spec,node,expected", [("4(x2)", 1, 4), ("3,1", 1, 1), ("2(x2),1", 2, 1)])
def test_local_world_size_from_tasks_per_node(spec, node, expected):
    env = {"SLURM_TASKS_PER_NODE": spec, "SLURM_NODEID": str(node)}
    assert distributed.tasks_on_this_node(env) == expected
    assert distributed.tasks_on_this_node({"SLURM_NTASKS_PER_NODE": "2", **env}) == 2


def test_torch_env_outside_slurm_is_an_error():
    with pytest.raises(ValueError, match="SLURM_PROCID"):
        distributed.torch_env({"SLURM_JOB_ID": "1"})


def test_export_torch_env_only_for_multi_task_jobs_and_keeps_user_settings():
    single = {**SLURM_TASK, "SLURM_NTASKS": "1"}
    assert distributed.export_torch_env(single) == {} and "RANK" not in single
    multi = {**SLURM_TASK, "MASTER_PORT": "12345"}
    added = distributed.export_torch_env(multi)
    assert multi["MASTER_PORT"] == "12345" and "MASTER_PORT" not in added
    assert multi["RANK"] == "5" and multi["WORLD_SIZE"] == "8"


def test_accelerate_command_one_process_per_gpu():
    cmd = distributed.accelerate_command(SLURM_TASK, ["algorithm=grpo", "seed=1"])
    assert cmd[:3] == ["accelerate", "launch", "--multi_gpu"]
    args = dict(zip(cmd[3:13:2], cmd[4:13:2]))
    assert args == {"--num_machines": "2", "--num_processes": "8", "--machine_rank": "1",
                    "--main_process_ip": "gpu017", "--main_process_port": str(20000 + 4711 % 10000)}
    assert cmd[13:] == ["-m", "reasoning_rl.train", "algorithm=grpo", "seed=1"]
    single = distributed.accelerate_command({"SLURM_JOB_ID": "9", "SLURM_JOB_NODELIST": "n1"}, [], gpus_per_node=1)
    assert "--multi_gpu" not in single and single[single.index("--num_processes") + 1] == "1"


# --- requeue.py

def test_requeue_target_and_refusals():
    assert requeue.slurm_task({}) is None
    assert requeue.slurm_task({"SLURM_JOB_ID": "12"}) == "12"
    array = {"SLURM_JOB_ID": "15", "SLURM_ARRAY_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "3"}
    assert requeue.slurm_task(array) == "12_3"
    assert requeue.requeue_problem(array) is None
    assert requeue.requeue_problem({}) == "not a SLURM job"
    assert "=0" in requeue.requeue_problem({**array, requeue.DISABLE_ENV: "0"})
    assert requeue.requeue_problem({**array, "SLURM_PROCID": "1"}) == "not rank 0"
    capped = {**array, "SLURM_RESTART_COUNT": "2", requeue.MAX_REQUEUES_ENV: "2"}
    assert "already requeued 2 times" in requeue.requeue_problem(capped)


def test_schedule_requeue_off_slurm_says_how_to_resume(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert requeue.schedule_requeue() == "re-run the same command to resume"
    assert not requeue.scheduled()


# --- manifest.py

def test_parse_sacct_expands_pending_array_ranges():
    text = "7_0|RUNNING\n7_[1-3%2]|PENDING\n8|CANCELLED by 0\n"
    assert manifest.parse_sacct(text) == {"7_0": "RUNNING", "7_1": "PENDING", "7_2": "PENDING",
                                          "7_3": "PENDING", "8": "CANCELLED"}


@pytest.mark.parametrize("own,state,expected", [
    ({}, "PENDING", "pending"),
    ({"status": "running"}, "RUNNING", "running"),
    ({"status": "preempted", "message": "checkpoint saved"}, "PENDING", "requeued"),
    ({"status": "preempted"}, "RUNNING", "running"),       # the requeued task started again
    ({"status": "completed"}, "COMPLETING", "completed"),  # reported its end, still exiting
    ({"status": "completed"}, "COMPLETED", "completed"),
    ({"status": "failed", "error": "ConfigError: bad"}, "FAILED", "failed"),
    ({"status": "running"}, "OUT_OF_MEMORY", "failed"),    # killed before it could say so
    ({"status": "preempted", "message": "m"}, "FAILED", "failed"),  # preempted, not requeued
    ({"status": "running"}, "CANCELLED", "cancelled"),
    ({"status": "completed"}, None, "completed"),          # local executor / sacct forgot the job
    ({}, None, "submitted"),
])
def test_member_status(own, state, expected):
    status, error = manifest.member_status(own, state)
    assert status == expected
    if expected == "failed":
        assert error and ("ConfigError" in error or state in error or "not requeued" in error)


def test_refresh_and_table_from_run_dirs(tmp_path):
    runs = []
    for n, (status, summary) in enumerate([("completed", {"pass@8": 0.5, "maj@8": 0.25}), ("failed", None)]):
        run = tmp_path / str(n)
        run.mkdir()
        own = {"status": status,
               **({"error": "ConfigError: dataset.limit must be positive"} if status == "failed" else {})}
        (run / "status.json").write_text(json.dumps(own))
        if summary:
            (run / "summary.json").write_text(json.dumps({k: {"mean": v, "ci_low": 0, "ci_high": 1, "n": 2}
                                                          for k, v in summary.items()}))
        runs.append({"num": n, "job_id": f"loc{n}", "overrides": [f"seed={n}"], "run_dir": str(run)})
    record = manifest.new(job_name="evaluate", sweep_dir=tmp_path, executor="local", array_job_id="loc0",
                          wandb_group="g", launcher={}, members=runs, submit_seconds=0.3)
    manifest.write(record)
    refreshed = manifest.refresh(tmp_path)
    assert [m["status"] for m in refreshed["members"]] == ["completed", "failed"]
    assert "dataset.limit" in refreshed["members"][1]["error"]
    table = manifest.results_table(refreshed)
    assert "pass@8" in table and "0.500" in table and "0.250" in table and "dataset.limit" in table
    assert json.loads((tmp_path / "sweep.json").read_text())["members"][0]["run_dir"] == str(tmp_path / "0")
    assert manifest.main([str(tmp_path)]) == 1  # a failed member: non-zero, for scripts


# --- launcher.py

def test_time_limit_must_leave_room_to_checkpoint():
    check_time_limit({"timeout_min": 20, "signal_delay_s": 120}, checkpoint_margin_s=120)
    with pytest.raises(SubmitError, match="timeout_min >= 4"):
        check_time_limit({"timeout_min": 3, "signal_delay_s": 120}, checkpoint_margin_s=120)
    # submitit's own default delay when the profile does not set one
    with pytest.raises(SubmitError, match="signal_delay_s=90"):
        check_time_limit({"timeout_min": 1}, checkpoint_margin_s=0)
    assert min_timeout_min(90, 120) == 4


def test_error_line_of_a_failed_job():
    assert first_error_line("stuff\nerror: dataset.limit must be positive\nmore") == "dataset.limit must be positive"
    trace = "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom\n"
    assert first_error_line(trace) == "ValueError: boom"


# --- GPUs: only where there are at least two.

def _cuda_devices() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


ALL_REDUCE = textwrap.dedent("""
    import os, torch, torch.distributed as dist
    dist.init_process_group("nccl")
    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    x = torch.tensor([rank + 1.0], device="cuda")
    dist.all_reduce(x)
    n = dist.get_world_size()
    assert x.item() == n * (n + 1) / 2, x.item()
    print("ok", rank, x.item(), flush=True)
    dist.destroy_process_group()
""")


@pytest.mark.skipif(_cuda_devices() < 2, reason="needs a node with >= 2 GPUs")
def test_multi_gpu_smoke_on_gpu_node(tmp_path):
    """NCCL all-reduce over 2 GPUs, (1) one process per simulated SLURM task with the env of
    torch_env(), as the sweep launcher runs them, and (2) through accelerate_command()."""
    script = tmp_path / "all_reduce.py"
    script.write_text(ALL_REDUCE)
    job = {"SLURM_JOB_ID": str(os.getpid()), "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "localhost",
           "SLURM_TASKS_PER_NODE": "2", "SLURM_NODEID": "0", "SLURM_JOB_NUM_NODES": "1", "SLURM_GPUS_ON_NODE": "2"}
    procs = []
    for rank in range(2):
        task = {**job, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)}
        env = {**os.environ, **distributed.torch_env(task), "MASTER_ADDR": "127.0.0.1"}
        procs.append(subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert all("ok" in out for out in outputs)

    cmd = distributed.accelerate_command({**job, "SLURM_JOB_NODELIST": "127.0.0.1"}, [], gpus_per_node=2)
    cmd = cmd[: cmd.index("-m")] + [str(script)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.count("ok") == 2
