#!/usr/bin/env bash
# Run here (with network to the package index), before bench/gpu_full.sh on a CUDA machine that
# has python3 and torch but nothing else of ours and no network. Puts into .gpu/ (git-ignored
# through .git/info/exclude): wheels of what that machine lacks (RecBole, faiss-cpu and RecBole's
# small dependencies, for Python 3.12 on x86-64) and a copy of the dataset folder.
#   bash bench/gpu_prepare.sh DATA_PATH [DATASET]     e.g. bash bench/gpu_prepare.sh ../shared/datasets
set -euo pipefail
cd "$(dirname "$0")/.."
data_path=${1:?usage: bash bench/gpu_prepare.sh DATA_PATH [DATASET]}; dataset=${2:-amazon-beauty}
[ -f "$data_path/$dataset/$dataset.inter" ] || { echo "no $data_path/$dataset/$dataset.inter" >&2; exit 2; }
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
mkdir -p .gpu/whl .gpu/data
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu/whl \
    recbole==1.2.1 faiss-cpu==1.15.1 colorlog==4.7.2 texttable==1.7.2 thop==0.1.1.post2209072238
rm -rf ".gpu/data/$dataset" && cp -r "$data_path/$dataset" .gpu/data/
du -sh .gpu
echo "ready: carry .gpu and run bash bench/gpu_full.sh on the CUDA machine"
