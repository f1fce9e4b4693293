#!/usr/bin/env bash
# Every GPU figure of the speed issue in one call, on one GPU machine (16 CPUs), printed as a table at the end:
#   1. one training epoch of LeNet5 on 60,000 images, batch 512: the trial (cache memory, device) against a pure
#      PyTorch loop over tensors on the GPU                                          (bench/epoch_time.py)
#   2. the main job, search_spaces/lenet.py --num-samples 50, against the expert's hand-written Ray Tune script
#      (Lightning in a function trainable, 1/8 GPU, reuse_actors), each a whole process  (bench/main_job.py)
#   3. 8 trials x 3 epochs packed 8 per GPU against the expert's pure-loop trainable  (bench/main_job.py --job packed)
#   4. the 50-trial ASHA sweep on the 60,000-image benchmark (bench/lenet_shaped.py), its wall time
# Logs go to $OUT (or a temporary directory). Run it from the repository root; on the device machine first install
# the wheels that ../shared/gpu/build_wheels.sh made in .whl/ (this script does it when Ray is missing).
#     bash bench/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
export TORCHMATE_OFFLINE=1 PYTHONUNBUFFERED=1
started=$(date +%s)
if ! python3 -c "import ray" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile .whl/*.whl > "$OUT/setup.log" 2>&1
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >> "$OUT/setup.log" 2>&1
fi
# their bytecode, once, on every core: where PYTHONDONTWRITEBYTECODE is set, every process would compile them again
python3 -m compileall -qq -j 0 "$(python3 -c 'import os, ray; print(os.path.dirname(os.path.dirname(ray.__file__)))')" \
    >> "$OUT/setup.log" 2>&1 || true
PY=$(python3 -c 'import sys; print(sys.executable)')
TOOL=$(dirname "$PY")/torchmate-tune
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/table.txt" 2>&1
echo "setup: $(( $(date +%s) - started )) s, $(nproc) CPUs" >> "$OUT/table.txt"

step() {  # step NAME LIMIT COMMAND...: runs it (stopped after LIMIT s), its output to $OUT/NAME.log, its wall noted
    local name=$1 limit=$2; shift 2
    local t0=$(date +%s%N)
    timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$? ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    echo "--- $name: rc $rc, $(( ms / 1000 )).$(( ms % 1000 / 100 )) s" >> "$OUT/table.txt"
}

# each step's figures go to the table as soon as it ends, so that a run cut short still brings them back
step epoch 90 "$PY" bench/epoch_time.py --epochs 3 --caches memory,device
grep -E "^LeNet5|pure PyTorch|trial, dataset.cache" "$OUT/epoch.log" >> "$OUT/table.txt"
step main 200 "$PY" bench/main_job.py --job main --num-samples 50
grep -E "job|expert's script|torchmate-tune" "$OUT/main.log" >> "$OUT/table.txt"
step packed 120 "$PY" bench/main_job.py --job packed
grep -E "job|expert's script|torchmate-tune" "$OUT/packed.log" >> "$OUT/table.txt"
asha_storage=$(mktemp -d)
step asha 150 "$TOOL" bench/lenet_shaped.py --num-samples 50 --storage-path "$asha_storage" --name asha
echo "50-trial ASHA sweep on 60,000 MNIST-shaped images (want < 120 s):" >> "$OUT/table.txt"
tail -n 4 "$OUT/asha.log" >> "$OUT/table.txt"
echo "total: $(( $(date +%s) - started )) s" >> "$OUT/table.txt"
cat "$OUT/table.txt"
