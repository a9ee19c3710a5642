"""reasoning-rl: train LLMs to reason with RL and measure whether it worked."""

import os

# OpenMP threads that spin while waiting make torch several times slower on CPUs shared with other
# processes (SLURM tasks on one node, parallel tests): measured 4x on 2 cores. Must be set before
# torch is imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from reasoning_rl.parallel import register_resolver  # noqa: E402  (after the OpenMP setting)

register_resolver()  # ${launched:…}, which conf/hydra/default.yaml names the run dir with
