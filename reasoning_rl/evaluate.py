"""Evaluate a model: N samples per problem, graded, Pass@K / maj@K / majority_correct@K with CIs.

    python -m reasoning_rl.evaluate model=smollm2_135m dataset=gsm8k dataset.limit=100 eval.num_samples=8
    python -m reasoning_rl.evaluate adapter=RUN_DIR dataset.limit=200 eval.num_samples=16   # a trained run's adapter
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from reasoning_rl import job_help
from reasoning_rl.cli import run_hydra_job
from reasoning_rl.errors import exit_on_user_error

job_help.register()  # `--help`: conf/evaluate.yaml's template lists this job's groups only


@hydra.main(config_path="../conf", config_name="evaluate", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    # Imported here, not at the top: `-m` sweeps compose and submit from this module in well under a
    # second, and only the jobs pay for torch / transformers / TRL.
    from reasoning_rl.evaluate_job import run

    run(cfg)


if __name__ == "__main__":
    run_hydra_job(main)
