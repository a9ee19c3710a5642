"""Sweep fan-out on the local SLURM: an 8-point Hydra sweep through hydra/launcher=slurm_local vs a
hand-written `sbatch` loop of the same 8 jobs. Time to submit, time until the last task starts, and
whether the sweep went out as one array job.

    bash launch/slurm_local.sh start && python -m bench.sweep_fanout [--small]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import CHILD_ENV, REPO, goal_text, parser, table, write_result

GOAL_SUBMIT_S = 3.0
POINTS = 8
# The cheapest real job: the evaluate job on one problem, one sample, one new token.
JOB = ["debug=smoke", "logger=none", "dataset.limit=1", "eval.num_samples=1", "eval.ks=[1]",
       "generation.max_new_tokens=1"]
DONE = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")


def sacct(job_ids: list[str]) -> list[tuple[str, str, str]]:
    """(job id, array job id, state) of each task."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobID,JobIDRaw,State"],
                         capture_output=True, text=True, check=True).stdout
    return [tuple(line.split("|")) for line in out.splitlines() if line.strip()]


def squeue_states(job_ids: list[str]) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%T"],
                         capture_output=True, text=True).stdout
    return out.split()


def wait_started_and_done(job_ids: list[str], start: float, expected: int, timeout: float) -> dict:
    """Poll until every task has left PENDING (the last start) and then until all finished."""
    last_start = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = sacct(job_ids)
        states = [s.split()[0] for *_, s in tasks]
        started = [s for s in states if s != "PENDING" and s != "REQUEUED"]
        if last_start is None and len(tasks) >= expected and len(started) >= expected:
            last_start = time.perf_counter() - start
        if last_start is not None and all(s in DONE for s in states):
            return {"last_task_start_s": last_start, "all_done_s": time.perf_counter() - start, "tasks": tasks}
        time.sleep(0.5)
    raise SystemExit(f"jobs {job_ids} did not finish within {timeout} s: {sacct(job_ids)}")


def run_sweep(folder: Path) -> dict:
    seeds = ",".join(str(i) for i in range(POINTS))
    cmd = [sys.executable, "-m", "reasoning_rl.evaluate", "-m", "hydra/launcher=slurm_local", f"seed={seeds}", *JOB,
           f"hydra.sweep.dir={folder}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, **CHILD_ENV})
    submit = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"sweep submit failed:\n{proc.stderr[-2000:]}")
    manifest = json.loads((folder / "sweep.json").read_text())  # written at submit
    job = manifest["array_job_id"]
    return {"submit_s": submit, "launcher_submit_s": manifest.get("submit_seconds"), "job_ids": [job],
            **wait_started_and_done([job], start, POINTS, 1800)}


def run_sbatch_loop(folder: Path) -> dict:
    folder.mkdir(parents=True)  # sbatch's -o: a job whose log file cannot be opened fails at once
    start = time.perf_counter()
    jobs = []
    for seed in range(POINTS):
        wrap = (f"cd {REPO} && OMP_NUM_THREADS=1 {sys.executable} -m reasoning_rl.evaluate {' '.join(JOB)} "
                f"seed={seed} hydra.run.dir={folder}/{seed}")
        out = subprocess.run(["sbatch", "--parsable", "-p", "debug", "-c", "1", "--mem=4G", "-t", "20",
                              "-o", f"{folder}/%j.out", "--wrap", wrap], capture_output=True, text=True, check=True)
        jobs.append(out.stdout.strip().split(";")[0])
    submit = time.perf_counter() - start
    done = wait_started_and_done(jobs, start, POINTS, 1800)
    failed = [t for t in done["tasks"] if t[2] != "COMPLETED"]
    if failed:
        raise SystemExit(f"sbatch loop jobs failed: {failed}; see {folder}/*.out")
    return {"submit_s": submit, "job_ids": jobs, **done}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.parse_args()
    status = subprocess.run(["bash", "launch/slurm_local.sh", "status"], cwd=REPO, capture_output=True, text=True)
    if status.returncode != 0:
        raise SystemExit("the local SLURM cluster is not up: bash launch/slurm_local.sh start")
    with tempfile.TemporaryDirectory(dir=REPO / "bench" / "results") as tmp:
        sweep = run_sweep(Path(tmp) / "sweep")
        print(f"sweep: submit {sweep['submit_s']:.2f} s, last start {sweep['last_task_start_s']:.1f} s", flush=True)
        loop = run_sbatch_loop(Path(tmp) / "loop")
        print(f"sbatch loop: submit {loop['submit_s']:.2f} s, last start {loop['last_task_start_s']:.1f} s", flush=True)
    arrays = {t[0].split("_")[0] for t in sweep["tasks"]}
    one_array = len(arrays) == 1 and len(sweep["tasks"]) == POINTS and all("_" in t[0] for t in sweep["tasks"])
    ratios = {"sweep_vs_loop_submit": sweep["submit_s"] / loop["submit_s"],
              "sweep_vs_loop_last_start": sweep["last_task_start_s"] / loop["last_task_start_s"]}
    print(f"\nsweep fan-out: {POINTS} points, local SLURM (2 CPUs, 1 CPU per task)")
    print(table([("hydra -m slurm_local", round(sweep["submit_s"], 2), round(sweep["last_task_start_s"], 1),
                  ratios["sweep_vs_loop_submit"], ratios["sweep_vs_loop_last_start"], f"1 array: {one_array}"),
                 ("sbatch loop", round(loop["submit_s"], 2), round(loop["last_task_start_s"], 1), 1.0, 1.0,
                  f"{len(loop['job_ids'])} jobs")],
                ["submitter", "submit s", "last start s", "submit vs loop", "last start vs loop", "jobs"]))
    print(f"(the launcher's own submit, Python and Hydra start-up excluded: {sweep['launcher_submit_s']} s)")
    print(f"sweep submit: {sweep['submit_s']:.2f} s  goal {goal_text(sweep['submit_s'], GOAL_SUBMIT_S, False)}; "
          f"one array job: {one_array}")
    path = write_result("sweep_fanout", {
        "points": POINTS, "job": JOB, "sweep": sweep, "sbatch_loop": loop, "one_array_job": one_array,
        "ratios": ratios, "goals": {"sweep_submit_s": f"<= {GOAL_SUBMIT_S} (absolute: the goal is stated in seconds)",
                                    "one_array_job": True},
        "notes": ["the 2-CPU node runs 2 tasks at a time, so 'last start' includes 3 waves of the job's run time",
                  "other sessions may use the same local cluster: its queue is shared"],
    })
    print(f"results: {path}")


if __name__ == "__main__":
    main()
