#!/usr/bin/env bash
# The full-budget table (bench/full_table.py) on one CUDA GPU, in one call: installs the wheels
# bench/gpu_prepare.sh put in .gpu/whl, runs every row to early stopping on .gpu/data, prints the
# table and the wall time. Results go to ${OUT:-results-gpu}/ (never over the CPU table).
#   bash bench/gpu_full.sh [DATASET] [--runs=... --key=value ...]
set -euo pipefail
source "$(dirname "$0")/gpu_env.sh"
start=$(date +%s)
python3 -m bench.full_table --dataset="$dataset" --data_path=.gpu/data --out_dir="$out" \
    --eval_batch_size=8192 --cpu_tuning=False "$@" 2>&1 | grep -v " INFO  " | tee "$out/gpu_full.log" || true
echo "wall time: $(( $(date +%s) - start )) s"
