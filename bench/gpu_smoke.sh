#!/usr/bin/env bash
# One epoch of every model and one RAFT epoch on one CUDA GPU (bench/gpu_smoke.py), in one call:
# installs the wheels bench/gpu_prepare.sh put in .gpu/whl, prints per-epoch times and what fails.
# Results go to ${OUT:-results-gpu}/.      bash bench/gpu_smoke.sh [DATASET] [--key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:-amazon-beauty}; shift || true
[ -d .gpu/whl ] && [ -d ".gpu/data/$dataset" ] || { echo "run bash bench/gpu_prepare.sh DATA_PATH first (here, with network)" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0), torch.__version__)"
out=${OUT:-results-gpu}; mkdir -p "$out"
python3 bench/gpu_smoke.py --dataset="$dataset" --data_path=.gpu/data --out_dir="$out" \
    --eval_batch_size=8192 --cpu_tuning=False --regen_data_path=/tmp/regen "$@" 2>&1 | grep -v " INFO  " | tee "$out/gpu_smoke.log"
