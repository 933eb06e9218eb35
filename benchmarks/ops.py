"""The operator benchmark: NMS family and RoI ops side by side with torchvision and the fallback.

Runs ``benchmarks/ops_nms.py`` (nms_1d at N = 2,000 and 20,000, batched_nms_1d over 20 classes) and
``benchmarks/ops_roi.py`` (roi_align_1d / roi_pool_1d forward+backward at B=32, C=512, T=128,
K=512, 16 bins) with the same thread counts for every implementation; each figure is a median of
repeated runs. torchvision rows appear when torchvision imports beside the installed torch.

    python benchmarks/ops.py [--threads 1 2] [--device cpu cuda]
"""

from __future__ import annotations

import argparse
import sys

# ops_nms / ops_roi sit beside this script, which Python puts first on sys.path.
import ops_nms
import ops_roi
import torch

from rc3d_af.ops._extension import report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    parser.add_argument("--device", nargs="+", default=["cpu"], choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    if "cuda" in args.device and not torch.cuda.is_available():
        print("benchmarks/ops.py: no CUDA device; benchmarking the CPU only.")
        args.device = [d for d in args.device if d != "cuda"] or ["cpu"]
    print(report())
    threads = list(dict.fromkeys(args.threads))
    nms_rows = [row for d in args.device for t in threads for row in ops_nms.run(t, d, repeats=args.repeats)]
    print("\n" + ops_nms.format_rows(nms_rows))
    roi_rows = [row for d in args.device for t in threads for row in ops_roi.run(t, args.repeats, d)]
    print("\n" + ops_roi.format_rows(roi_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
