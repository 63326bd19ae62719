#!/usr/bin/env bash
# One epoch of every model and one RAFT epoch on one CUDA GPU (bench/gpu_smoke.py), in one call:
# installs the wheels bench/gpu_prepare.sh put in .gpu/whl, prints per-epoch times and what fails.
# Results go to ${OUT:-results-gpu}/.      bash bench/gpu_smoke.sh [DATASET] [--key=value ...]
set -euo pipefail
source "$(dirname "$0")/gpu_env.sh"
python3 -m bench.gpu_smoke --dataset="$dataset" --data_path=.gpu/data --out_dir="$out" \
    --eval_batch_size=8192 --cpu_tuning=False --regen_data_path=/tmp/regen "$@" 2>&1 | grep -v " INFO  " | tee "$out/gpu_smoke.log"
