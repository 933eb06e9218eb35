#!/usr/bin/env bash
# One prepared check for a machine with a CUDA torch, nvcc and a GPU (about 5 minutes on an H100):
# builds the CUDA kernels, runs the whole op test suite (CUDA parity tests included), the op
# benchmark on CPU and CUDA, and the short A2Net GPU training/inference check.
# Usage: bash scripts/gpu_check.sh [OUT_DIR]   (results and logs are written to OUT_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
export FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-8}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"

echo "== build (FORCE_CUDA=1)"
start=$(date +%s)
"$PYTHON" -m pip install --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1 \
  || { tail -n 60 "$OUT/build.log"; exit 1; }
echo "built in $(( $(date +%s) - start )) s"
"$PYTHON" -m rc3d_af.ops | tee "$OUT/doctor.txt"

echo "== op tests (CUDA parity included)"
RC3D_AF_REQUIRE_COMPILED=1 "$PYTHON" -m pytest -q -rs tests/test_ops_nms.py tests/test_ops_roi.py \
  tests/test_extension.py 2>&1 | tee "$OUT/op_tests.txt"

echo "== op benchmark"
"$PYTHON" benchmarks/ops.py --device cpu cuda 2>&1 | tee "$OUT/ops_benchmark.txt"

if [ -f scripts/gpu_check_model.sh ]; then
  echo "== A2Net on the GPU"
  bash scripts/gpu_check_model.sh "$OUT" 2>&1 | tee "$OUT/model_check.txt"
fi
echo "gpu_check: done"
