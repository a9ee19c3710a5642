import os

# Before torch loads (see reasoning_rl/__init__.py): spinning OpenMP threads slow shared CPUs 4x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Under pytest-xdist (`-n W`) the jobs each worker starts get cores // W threads, not all of them: on 2
# cores two 1-thread jobs do ~1.2-1.3x the work of one 2-thread job (small matmuls scale badly across
# threads, and imports and Python overhead overlap), where 2 x 2 threads would only contend.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _workers)))
