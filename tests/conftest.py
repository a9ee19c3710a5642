import os

# Before torch loads (see reasoning_rl/__init__.py): spinning OpenMP threads slow shared CPUs 4x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
