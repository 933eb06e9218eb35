#!/usr/bin/env bash
# One prepared check for a machine with a CUDA torch, nvcc and a GPU, time-boxed to BUDGET seconds
# (default 290: under 5 minutes on one GPU). Stages, in order of importance, each with its own
# limit (cut to what is left of the budget; a stage cut short is reported as "timeout"):
#   build (FORCE_CUDA=1)                      the CUDA kernels
#   op tests                                  the op test suite, CUDA parity tests included
#   detectors                                 scripts/gpu_check_model.sh: both detectors trained under
#                                             torchrun (nccl; 2 processes when 2 GPUs), sharded vs one-
#                                             process test, CPU parity, AMP float16 and bfloat16
#   inference benchmark                       benchmarks/scale.py: THUMOS14 test (213 videos, 5,172
#                                             windows) with the paper's A2Net on CUDA, by stage
#   training benchmarks                       benchmarks/scale.py: throughput on 1 GPU (and 2), and
#                                             the training step's overhead over a bare forward+backward
#   op benchmark                              benchmarks/ops.py on CPU and CUDA
# Writes logs and OUT_DIR/summary.md (stage, status, seconds); exits non-zero when a stage failed.
# Usage: bash scripts/gpu_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
BUDGET=${BUDGET:-290}
export FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-16}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export PYTHON
START=$(date +%s)
SUMMARY="$OUT/summary.md"
printf '| stage | status | seconds |\n|---|---|---|\n' >"$SUMMARY"
FAILED=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"

# stage NAME LIMIT LOG COMMAND...: run COMMAND with at most LIMIT seconds (and what is left of the
# budget), its output in OUT/LOG; one summary row.
stage() {
  local name=$1 limit=$2 log=$3
  shift 3
  local left=$((BUDGET - ($(date +%s) - START)))
  ((limit > left)) && limit=$left
  if ((limit < 5)); then
    printf '| %s | skipped (budget spent) | 0 |\n' "$name" >>"$SUMMARY"
    return
  fi
  echo "== $name (at most $limit s)"
  local t0 status
  t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" >"$OUT/$log" 2>&1
  status=$?
  local took=$(($(date +%s) - t0))
  case $status in
    0) printf '| %s | ok | %d |\n' "$name" "$took" >>"$SUMMARY" ;;
    124 | 137) printf '| %s | timeout | %d |\n' "$name" "$took" >>"$SUMMARY"; FAILED=1 ;;
    *) printf '| %s | FAILED (exit %d) | %d |\n' "$name" "$status" "$took" >>"$SUMMARY"; FAILED=1 ;;
  esac
  tail -n 25 "$OUT/$log"
}

stage "build (FORCE_CUDA=1)" 100 build.log \
  "$PYTHON" -m pip install --no-build-isolation --no-deps -e .
"$PYTHON" -m rc3d_af.ops | tee "$OUT/doctor.txt"
"$PYTHON" -m rc3d_af doctor | tee -a "$OUT/doctor.txt"
stage "op tests (CUDA parity included)" 40 op_tests.txt \
  env RC3D_AF_REQUIRE_COMPILED=1 "$PYTHON" -m pytest -q -rs tests/test_ops_nms.py tests/test_ops_roi.py \
  tests/test_extension.py tests/test_engine_batching.py
stage "detectors: torchrun training, sharded inference, AMP" 90 model_check.txt \
  bash scripts/gpu_check_model.sh "$OUT"
stage "inference benchmark (THUMOS14 test, paper A2Net, CUDA)" 45 scale_inference.txt \
  "$PYTHON" benchmarks/scale.py --sections inference --device cuda --repeat 1 --videos 213 \
  --workers 4 --work "$OUT/scale" --json "$OUT/scale_inference.json"
stage "training benchmarks (throughput, overhead; CUDA)" 45 scale_train.txt \
  "$PYTHON" benchmarks/scale.py --sections train overhead --device cuda --repeat 1 --train-videos 40 \
  --work "$OUT/scale" --json "$OUT/scale_train.json"
stage "op benchmark" 30 ops_benchmark.txt "$PYTHON" benchmarks/ops.py --device cpu cuda

echo
cat "$SUMMARY"
echo "gpu_check: $( ((FAILED)) && echo 'FAILED (see the summary)' || echo done) in $(($(date +%s) - START)) s"
exit "$FAILED"
