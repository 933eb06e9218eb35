"""Benchmark of roi_align_1d and roi_pool_1d, forward and backward, on the CPU or CUDA.

Implementations: the compiled kernels (when built), the pure-PyTorch fallback, and
torchvision.ops.roi_align / roi_pool on height-1 images (when torchvision is importable).
Sizes: B=32, C=512, T=128, K=512 RoIs, 16 bins, sampling ratio 2 (RoIAlign). Each figure is the
median of repeated runs in milliseconds: wall time, or with --clock cpu the process CPU time (all
threads, system time included), which a machine busy with other jobs disturbs less.

    python benchmarks/ops_roi.py [--threads 1 2] [--repeats 7] [--device cpu cuda] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from rc3d_af.ops._extension import use_compiled
from rc3d_af.ops.roi import roi_align_1d_reference, roi_pool_1d_reference

try:
    import torchvision
except ImportError:
    torchvision = None

BATCH, CHANNELS, LENGTH, NUM_ROIS, OUTPUT_SIZE, SAMPLING_RATIO = 32, 512, 128, 512, 16, 2


def make_inputs(seed: int = 0, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Features [B, C, T] and RoIs [K, 3] of 2..64 positions starting anywhere in the window."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(BATCH, CHANNELS, LENGTH, generator=g)
    start = torch.rand(NUM_ROIS, generator=g) * (LENGTH - 2)
    length = 2 + torch.rand(NUM_ROIS, generator=g) * (LENGTH / 2 - 2)
    batch = torch.randint(0, BATCH, (NUM_ROIS,), generator=g).float()
    rois = torch.stack([batch, start, (start + length).clamp_max(LENGTH)], 1)
    return features.to(device), rois.to(device)


Op = Callable[[torch.Tensor], torch.Tensor]


def implementations(rois: torch.Tensor) -> dict[str, dict[str, Op]]:
    """{op: {implementation: fn(features) -> [K, C, OUTPUT_SIZE]}}."""
    impls: dict[str, dict[str, Op]] = {"roi_align_1d": {}, "roi_pool_1d": {}}
    if use_compiled(rois):
        ops = torch.ops.rc3d_af
        impls["roi_align_1d"]["compiled"] = lambda x: ops.roi_align_1d(
            x, rois, 1.0, OUTPUT_SIZE, SAMPLING_RATIO, False
        )
        impls["roi_pool_1d"]["compiled"] = lambda x: ops.roi_pool_1d(x, rois, 1.0, OUTPUT_SIZE)[0]
    impls["roi_align_1d"]["fallback"] = lambda x: roi_align_1d_reference(
        x, rois, OUTPUT_SIZE, 1.0, SAMPLING_RATIO, False
    )
    impls["roi_pool_1d"]["fallback"] = lambda x: roi_pool_1d_reference(x, rois, OUTPUT_SIZE)[0]
    if torchvision is not None:
        zero = torch.zeros_like(rois[:, 0])
        boxes = torch.stack([rois[:, 0], rois[:, 1], zero, rois[:, 2], zero + 1], 1)
        size = (1, OUTPUT_SIZE)
        impls["roi_align_1d"]["torchvision"] = lambda x: torchvision.ops.roi_align(
            x[:, :, None], boxes, size, 1.0, SAMPLING_RATIO, False
        )[:, :, 0]
        impls["roi_pool_1d"]["torchvision"] = lambda x: torchvision.ops.roi_pool(
            x[:, :, None], boxes, size, 1.0
        )[:, :, 0]
    return impls


def time_once(
    fn: Op, features: torch.Tensor, grad: torch.Tensor, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, float]:
    """Forward and backward milliseconds of one call on ``clock``."""
    x = features.detach().requires_grad_(True)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    start = clock()
    out = fn(x)
    sync()
    middle = clock()
    out.backward(grad)
    sync()
    return (middle - start) * 1e3, (clock() - middle) * 1e3


def run(threads: int, repeats: int = 7, device: str = "cpu", clock: str = "wall") -> list[dict]:
    """Rows {op, impl, threads, device, clock, forward_ms, backward_ms, total_ms} at the sizes above.

    Implementations take turns within each repetition, so that a busy machine slows them alike;
    one warm-up round first; the slow fallback runs in the first 3 rounds only. ``clock``:
    ``"wall"`` (time.perf_counter) or ``"cpu"`` (time.process_time).
    """
    timer = time.perf_counter if clock == "wall" else time.process_time
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        features, rois = make_inputs(device=device)
        grad = torch.randn(NUM_ROIS, CHANNELS, OUTPUT_SIZE, device=device)
        rows = []
        for op, impls in implementations(rois).items():
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in impls}
            for attempt in range(repeats + 1):
                for name, fn in impls.items():
                    if name == "fallback" and attempt > 3:
                        continue
                    measured = time_once(fn, features, grad, timer)
                    if attempt:
                        times[name].append(measured)
            for name, measured in times.items():
                forward = statistics.median(m[0] for m in measured)
                backward = statistics.median(m[1] for m in measured)
                rows.append(
                    {
                        "op": op,
                        "impl": name,
                        "threads": threads,
                        "device": device,
                        "clock": clock,
                        "forward_ms": forward,
                        "backward_ms": backward,
                        "total_ms": forward + backward,
                    }
                )
        return rows
    finally:
        torch.set_num_threads(previous)


def format_rows(rows: list[dict]) -> str:
    header = (
        f"{'op':<14}{'impl':<13}{'device':>7}{'threads':>8}"
        f"{'fwd ms':>10}{'bwd ms':>10}{'total ms':>10}{'vs tv':>8}"
    )
    lines = [header, "-" * len(header)]
    key = ("op", "device", "threads")
    baseline = {tuple(r[k] for k in key): r["total_ms"] for r in rows if r["impl"] == "torchvision"}
    for r in rows:
        tv = baseline.get(tuple(r[k] for k in key))
        speedup = f"{tv / r['total_ms']:.2f}x" if tv else "-"
        lines.append(
            f"{r['op']:<14}{r['impl']:<13}{r['device']:>7}{r['threads']:>8}{r['forward_ms']:>10.2f}{r['backward_ms']:>10.2f}"
            f"{r['total_ms']:>10.2f}{speedup:>8}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", nargs="+", default=["cpu"], choices=["cpu", "cuda"])
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall", help="wall time or process CPU time"
    )
    args = parser.parse_args()
    print(f"torch {torch.__version__}, torchvision {getattr(torchvision, '__version__', 'not importable')}")
    print(
        f"B={BATCH} C={CHANNELS} T={LENGTH} K={NUM_ROIS} output_size={OUTPUT_SIZE} "
        f"sampling_ratio={SAMPLING_RATIO} (roi_align), float32, {args.clock} time"
    )
    rows = [
        row
        for device in args.device
        for threads in args.threads
        for row in run(threads, args.repeats, device, args.clock)
    ]
    print(format_rows(rows))


if __name__ == "__main__":
    main()
