#!/usr/bin/env bash
# Compile-check every CUDA source with nvcc against the installed torch's headers, without a GPU
# and without a CUDA build of torch. Catches syntax and type errors; proves nothing about results.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
shopt -s nullglob
sources=(csrc/cuda/*.cu)
if ! command -v nvcc >/dev/null 2>&1; then
  echo "cuda-check: SKIPPED (nvcc not found); ${#sources[@]} CUDA file(s) not compile-checked."
  exit 0
fi
if [ ${#sources[@]} -eq 0 ]; then
  echo "cuda-check: no CUDA sources."
  exit 0
fi
includes=$("$PYTHON" -c 'from torch.utils.cpp_extension import include_paths; print(" ".join("-I" + p for p in include_paths()))')
py_include=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
compile_one() {
  echo "cuda-check: nvcc -c $1"
  # The CPU torch wheel lacks the generated cuda_cmake_macros.h: C10_CUDA_NO_CMAKE_CONFIGURE_FILE.
  nvcc -c "$1" -o "$out/$(basename "$1").o" -std=c++20 --expt-relaxed-constexpr \
    -gencode arch=compute_90,code=sm_90 -Xcompiler -fPIC \
    -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE -DWITH_CUDA -DTORCH_EXTENSION_NAME=_C \
    $includes -I"$py_include" -Icsrc
}
# MAX_JOBS files at a time (one nvcc can take 3 GB); any failure fails the check.
jobs_max=${MAX_JOBS:-2}
pids=()
for src in "${sources[@]}"; do
  compile_one "$src" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs_max" ]; then
    wait "${pids[0]}"
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
echo "cuda-check: ${#sources[@]} CUDA file(s) compiled with $(nvcc --version | tail -n 2 | head -n 1)."
