#!/usr/bin/env bash
# A2Net on the GPU in about 2 minutes (called by scripts/gpu_check.sh after the build): a small
# synthetic THUMOS14-timed set, a short training run of the paper-width model on CUDA with AMP off
# and on, test-set inference on CUDA for each, and the AMP-off checkpoint re-tested on the CPU
# (its mAP must match the CUDA one). Prints the timings and mAPs; exits non-zero on any failure.
# Usage: bash scripts/gpu_check_model.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-gpu_check_out}}/model
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu_check_model: no CUDA device")'

echo "== synthetic data (80 videos, D=256)"
"$PYTHON" -m rc3d_af synth --like thumos14 --videos 80 --dim 256 --seed 0 --out "$OUT/data"

# Paper architecture (width 1.0, 65 M parameters at D=2048), 2 epochs, paper batch size.
common=(--set "data.annotations=$OUT/data/annotations.json" --set "data.features=$OUT/data/features"
        --set train.device=cuda --set train.epochs=2 --set train.lr=1e-4 --set model.width_multiplier=1.0
        --set train.eval_every=2 --no-progress)
for amp in false true; do
  echo "== train on CUDA, AMP $amp"
  SECONDS=0
  "$PYTHON" -m rc3d_af train configs/a2net_synthetic.yaml "${common[@]}" --set "train.amp=$amp" \
    --out "$OUT/amp_$amp"
  echo "train (AMP $amp): ${SECONDS} s"
  echo "== test on CUDA, AMP $amp"
  SECONDS=0
  "$PYTHON" -m rc3d_af test --checkpoint "$OUT/amp_$amp/last.pt" --device cuda --out "$OUT/amp_$amp/test_cuda"
  echo "test (AMP $amp): ${SECONDS} s"
done

echo "== AMP-off checkpoint on the CPU: same mAP as on CUDA"
"$PYTHON" -m rc3d_af test --checkpoint "$OUT/amp_false/last.pt" --device cpu --out "$OUT/amp_false/test_cpu" \
  --no-plots >/dev/null
"$PYTHON" - "$OUT" <<'PY'
import json, math, sys
out = sys.argv[1]
load = lambda p: json.load(open(f"{out}/{p}/metrics.json"))
cuda, cpu, amp = load("amp_false/test_cuda"), load("amp_false/test_cpu"), load("amp_true/test_cuda")
for name, report in (("cuda fp32", cuda), ("cpu fp32", cpu), ("cuda amp", amp)):
    print(f"{name:>10}: mAP@0.5 {report['mAP'][4]:.4f}  average {report['average_mAP']:.4f}  "
          f"predictions {report['predictions']}")
    assert all(v is not None and math.isfinite(v) for v in report["mAP"]), f"{name}: non-finite mAP"
diff = max(abs(a - b) for a, b in zip(cuda["mAP"], cpu["mAP"]))
print(f"max |mAP(cuda) - mAP(cpu)| = {diff:.2e}")
assert diff < 5e-3, "CUDA and CPU inference disagree"
PY
echo "gpu_check_model: OK"
