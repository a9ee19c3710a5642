import os

import pytest

# Before torch loads (see reasoning_rl/__init__.py): spinning OpenMP threads slow shared CPUs 4x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Under pytest-xdist (`-n W`) the jobs each worker starts get cores // W threads, not all of them: on 2
# cores two 1-thread jobs do ~1.2-1.3x the work of one 2-thread job (small matmuls scale badly across
# threads, and imports and Python overhead overlap), where 2 x 2 threads would only contend.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _workers)))

EMBEDDED_MODEL = {"name_or_path": "smollm2-135m-instruct", "source": "embedded", "dtype": "float32"}


@pytest.fixture(scope="module")
def one_thread():
    """For modules that sample in-process (`pytestmark = pytest.mark.usefixtures("one_thread")`): test suites share
    a 2-core box, and two torch threads competing with other processes stall at OpenMP barriers (measured 10x
    slower than one thread under load)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def embedded_lm():
    """The embedded SmolLM2-135M in float32 on CPU, loaded once per module."""
    from reasoning_rl.models import load_model_and_tokenizer

    return load_model_and_tokenizer(EMBEDDED_MODEL, device="cpu")
