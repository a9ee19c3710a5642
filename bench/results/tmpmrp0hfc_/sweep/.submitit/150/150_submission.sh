#!/bin/bash

# Parameters
#SBATCH --array=0-7%8
#SBATCH --cpus-per-task=1
#SBATCH --error=/work/main/bench/results/tmpmrp0hfc_/sweep/.submitit/%A_%a/%A_%a_0_log.err
#SBATCH --job-name=evaluate
#SBATCH --mem=4GB
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=/work/main/bench/results/tmpmrp0hfc_/sweep/.submitit/%A_%a/%A_%a_0_log.out
#SBATCH --partition=debug
#SBATCH --signal=USR2@120
#SBATCH --time=20
#SBATCH --wckey=submitit

# setup
export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK MKL_NUM_THREADS=$SLURM_CPUS_PER_TASK
unset SLURM_PARTITION SLURM_ACCOUNT SLURM_QOS SLURM_CONSTRAINT SLURM_EXCLUDE

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output /work/main/bench/results/tmpmrp0hfc_/sweep/.submitit/%A_%a/%A_%a_%t_log.out --error /work/main/bench/results/tmpmrp0hfc_/sweep/.submitit/%A_%a/%A_%a_%t_log.err /work/venv/bin/python -u -m submitit.core._submit /work/main/bench/results/tmpmrp0hfc_/sweep/.submitit/%j
