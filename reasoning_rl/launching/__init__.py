"""Launching sweeps on SLURM (or locally) through hydra-submitit-launcher.

    launcher.py     the sweep launchers: one array per sweep, no-wait by default, bad input refused
    manifest.py     <sweep dir>/sweep.json: members, job ids, run dirs, statuses (`python -m
                    reasoning_rl.launching.manifest <sweep dir>` refreshes it and prints the table)
    requeue.py      a preempted SLURM task requeues itself and resumes from its checkpoint
    distributed.py  torch.distributed / accelerate settings from SLURM variables (multi-GPU)

Kept light: Hydra imports launcher.py (through hydra_plugins/reasoning_rl_launcher) at every start.
"""
