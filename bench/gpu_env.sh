# Sourced by bench/gpu_full.sh and bench/gpu_smoke.sh on a CUDA machine: checks that
# bench/gpu_prepare.sh ran, installs its wheels to /tmp/site, sets PYTHONPATH, checks CUDA, and
# sets $dataset (first argument, default amazon-beauty; the rest stay in "$@") and $out.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dataset=${1:-amazon-beauty}; shift || true
[ -d .gpu/whl ] && [ -d ".gpu/data/$dataset" ] || { echo "run bash bench/gpu_prepare.sh DATA_PATH first (here, with network)" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0), torch.__version__)"
out=${OUT:-results-gpu}; mkdir -p "$out"
