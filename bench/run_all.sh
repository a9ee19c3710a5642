#!/usr/bin/env bash
# Every bench in turn; each prints its table and writes bench/results/<name>.json.
#   bash bench/run_all.sh            # full sizes (about an hour on 2 CPU cores)
#   bash bench/run_all.sh --small    # CI sizes
# Needs the bench extra (pip install -e '.[bench]') and, for sweep_fanout, the local SLURM cluster
# (bash launch/slurm_local.sh start); a bench that cannot run is reported and the others go on.
set -uo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false WANDB_MODE=offline HF_HUB_OFFLINE=1
failed=()
for bench in eval_throughput grpo_overhead eval_cost memory sweep_fanout maj_at_k; do
  echo "=== $bench $*"
  python -m "bench.$bench" "$@" || failed+=("$bench")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
