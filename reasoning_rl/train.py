"""Train a model to reason: SFT, ORPO on self-generated pairs, or GRPO, with LoRA; Pass@K / maj@K
curves during training; checkpoints that survive preemption.

    python -m reasoning_rl.train algorithm=grpo hparams.learning_rate=1e-5 eval.every_steps=10
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from reasoning_rl import job_help
from reasoning_rl.cli import run_hydra_job
from reasoning_rl.errors import exit_on_user_error

job_help.register()  # `--help`: conf/train.yaml's template lists this job's groups only


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    # Imported here, not at the top: `-m` sweeps compose and submit from this module in well under a
    # second, and only the jobs pay for torch / transformers / TRL.
    from reasoning_rl.train_job import run

    run(cfg)


if __name__ == "__main__":
    run_hydra_job(main)
