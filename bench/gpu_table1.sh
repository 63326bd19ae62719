#!/usr/bin/env bash
# bench.table1 on one CUDA GPU, one dataset a call: trains the rows not stored yet (each resuming
# from its last epoch), evaluates per-user values, writes the table. Each call stops itself after
# ${TABLE1_LIMIT_S:-510} s (under a 9-minute device call); run the same command again until it
# prints "table done". The store lives in .gpu/table1/ (kept while the machine stays warm) and is
# copied, without checkpoints, to ${OUT:-results-gpu}/table1/ at the end of every call.
#   bash bench/gpu_prepare.sh DATA_PATH DATASET   (here, once per dataset)
#   bash bench/gpu_table1.sh DATASET              (on the CUDA machine, repeatedly)
set -euo pipefail
source "$(dirname "$0")/gpu_env.sh"
mkdir -p .gpu/table1
start=$(date +%s)
status=0
timeout --signal=INT "${TABLE1_LIMIT_S:-510}" python3 -m bench.table1 --data_path=.gpu/data \
    --datasets="$dataset" --out_dir=.gpu/table1 --run --per_user --eval_batch_size=8192 --cpu_tuning=False "$@" \
    2>&1 | grep -v " INFO  " | tail -n 60 || status=$?
mkdir -p "$out/table1" && dest=$(cd "$out/table1" && pwd)
(cd .gpu/table1 && find . -type f ! -name '*.pth' ! -path '*/regen-data/*' -exec cp --parents {} "$dest/" \;)
echo "wall time: $(( $(date +%s) - start )) s"
if [ "$status" = 0 ]; then echo "table done"; else echo "not done (status $status): run again"; fi
