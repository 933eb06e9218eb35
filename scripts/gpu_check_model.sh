#!/usr/bin/env bash
# Both detectors on the GPU (called by scripts/gpu_check.sh after the build; about 90 s on one H100):
# a small synthetic THUMOS14-timed set; per detector a one-epoch training under torchrun (NPROC
# processes, nccl: 2 when 2 GPUs are present, else 1) with AMP off, then its test sharded under
# torchrun, again in one process (the files must be equal), and on the CPU (mAP within 5e-3);
# then one-epoch trainings and tests with AMP float16 and bfloat16 (R-C3D + AF: the RoI ops under
# autocast). Prints the mAPs and timings; exits non-zero on any failure.
# Dry run on a machine without GPU (the same steps with gloo, AMP falling back as on the CPU):
#   DEVICE=cpu NPROC=2 VIDEOS=8 DIM=16 bash scripts/gpu_check_model.sh OUT_DIR
# Usage: bash scripts/gpu_check_model.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-gpu_check_out}}/model
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
VIDEOS=${VIDEOS:-40}
DIM=${DIM:-256}
# One CPU thread per process, for torchrun's processes and the one-process runs alike: the CPU
# kernels' results can depend on the thread count, and the sharded files must equal one process's.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [ "$DEVICE" = cuda ]; then
  "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu_check_model: no CUDA device")'
  NPROC=${NPROC:-$("$PYTHON" -c 'import torch; print(min(torch.cuda.device_count(), 2))')}
else
  NPROC=${NPROC:-2}
fi
TORCHRUN=("$PYTHON" -m torch.distributed.run --standalone --nproc-per-node "$NPROC")
echo "== $NPROC process(es) on $DEVICE; synthetic data ($VIDEOS videos, D=$DIM)"
"$PYTHON" -m rc3d_af synth --like thumos14 --videos "$VIDEOS" --dim "$DIM" --seed 0 --out "$OUT/data" >/dev/null

common=(--set "data.annotations=$OUT/data/annotations.json" --set "data.features=$OUT/data/features"
        --set "train.device=$DEVICE" --set train.epochs=1 --set train.batch_size=32 --set train.num_workers=2
        --set train.num_threads=1 --no-progress --force)
test_args=(--device "$DEVICE" --no-plots)
for arch in a2net rc3d_af; do
  for amp in off float16 bfloat16; do
    run="$OUT/${arch}_$amp"
    amp_set=(--set train.amp=false)
    [ "$amp" != off ] && amp_set=(--set train.amp=true --set "train.amp_dtype=$amp")
    echo "== $arch, AMP $amp: train ($NPROC processes)"
    SECONDS=0
    "${TORCHRUN[@]}" -m rc3d_af train "configs/${arch}_synthetic.yaml" "${common[@]}" "${amp_set[@]}" \
      --out "$run" >"$run.train.log" 2>&1 || { tail -n 40 "$run.train.log"; exit 1; }
    echo "train: ${SECONDS} s"
    SECONDS=0
    "${TORCHRUN[@]}" -m rc3d_af test --checkpoint "$run/last.pt" "${test_args[@]}" --out "$run/test_sharded" \
      >"$run.test.log" 2>&1 || { tail -n 40 "$run.test.log"; exit 1; }
    echo "sharded test: ${SECONDS} s"
    if [ "$amp" = off ]; then
      "$PYTHON" -m rc3d_af test --checkpoint "$run/last.pt" "${test_args[@]}" --out "$run/test_one" >/dev/null
      "$PYTHON" -m rc3d_af test --checkpoint "$run/last.pt" --device cpu --no-plots --out "$run/test_cpu" >/dev/null
    fi
  done
done

"$PYTHON" - "$OUT" <<'PY'
import json, math, sys
from pathlib import Path
out = Path(sys.argv[1])
load = lambda p: json.loads((out / p / "metrics.json").read_text())
for arch in ("a2net", "rc3d_af"):
    for amp in ("off", "float16", "bfloat16"):
        report = load(f"{arch}_{amp}/test_sharded")
        print(f"{arch:>8} AMP {amp:>8}: mAP@0.5 {report['mAP'][4]:.4f}  average {report['average_mAP']:.4f}  "
              f"predictions {report['predictions']}  world_size {report['world_size']}")
        assert all(v is not None and math.isfinite(v) for v in report["mAP"]), f"{arch} {amp}: non-finite mAP"
    run = out / f"{arch}_off"
    same = (run / "test_sharded/results.json").read_bytes() == (run / "test_one/results.json").read_bytes()
    print(f"{arch}: sharded results.json {'==' if same else '!='} one process's")
    assert same, f"{arch}: the sharded test differs from the one-process test"
    diff = max(abs(a - b) for a, b in zip(load(f"{arch}_off/test_one")["mAP"], load(f"{arch}_off/test_cpu")["mAP"]))
    print(f"{arch}: max |mAP(device) - mAP(cpu)| = {diff:.2e}")
    assert diff < 5e-3, f"{arch}: device and CPU inference disagree"
PY
echo "gpu_check_model: OK"
