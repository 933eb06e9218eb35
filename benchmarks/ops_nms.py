"""Benchmark of nms_1d and batched_nms_1d: compiled kernels vs the pure-PyTorch fallback vs torchvision.

Input: THUMOS-like detections of one long video: centres uniform over 0-600 s, lengths log-uniform
in 0.5-60 s, uniform scores, 20 classes for batched NMS; torchvision gets the same segments embedded
as boxes (start, 0, end, 1), whose IoU equals the segment IoU. Every backend runs with the same
thread count; the figure is the median time (wall, or process CPU time with --clock cpu) of repeated
calls, the backends taking turns (one call for the slow fallback). "agree": the same kept set as
torchvision's, in the same score order (torchvision leaves the order of equal scores undefined;
rc3d_af takes them in index order).

    python benchmarks/ops_nms.py [--threads 1 2] [--device cpu cuda] [--iou 0.5] [--clock wall|cpu]

torchvision is optional (it must match the installed torch); without it those rows are omitted.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch

from rc3d_af.ops import _extension
from rc3d_af.ops.nms import batched_nms_1d, batched_nms_1d_reference, nms_1d, nms_1d_reference

SIZES = (2_000, 20_000)
NUM_CLASSES = 20


def make_detections(n: int, seed: int = 0, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """``(segments [n, 2] float32 seconds, scores [n], labels [n] int64 in [0, 20))``."""
    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, generator=gen) * 600
    length = 0.5 * torch.exp(torch.rand(n, generator=gen) * math.log(60 / 0.5))
    segments = torch.stack([centre - length / 2, centre + length / 2], 1)
    scores = torch.rand(n, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
    return segments.to(device), scores.to(device), labels.to(device)


def as_boxes(segments: torch.Tensor) -> torch.Tensor:
    """``[n, 2]`` segments -> ``[n, 4]`` boxes (start, 0, end, 1)."""
    zeros = torch.zeros_like(segments[:, 0])
    return torch.stack([segments[:, 0], zeros, segments[:, 1], zeros + 1], 1)


def same_selection(keep: torch.Tensor, expected: torch.Tensor, scores: torch.Tensor) -> bool:
    """Same kept set in the same score order; the order among equal scores may differ (torchvision
    does not define it; rc3d_af takes them in index order)."""
    same_set = torch.equal(keep.sort().values, expected.sort().values)
    return same_set and torch.equal(scores[keep], scores[expected])


def time_ms(fn: Callable[[], object], device: str, clock: Callable[[], float]) -> float:
    """One call of ``fn`` in ms on ``clock`` (CUDA work included)."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = clock()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (clock() - start) * 1e3


def median_ms(
    backends: dict[str, Callable[[], object]], repeats: int, device: str, clock: Callable[[], float]
) -> dict[str, float]:
    """Median time per backend. The backends take turns in every round, so a change of machine load
    during the run affects them alike (the timings here were taken on a shared machine)."""
    times: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(repeats):
        for name, fn in backends.items():
            times[name].append(time_ms(fn, device, clock))
    return {name: statistics.median(values) for name, values in times.items()}


def _torchvision_ops():
    try:
        from torchvision import ops
    except (ImportError, RuntimeError):  # missing, or built for another torch
        return None
    return ops


def run(
    threads: int, device: str = "cpu", iou_threshold: float = 0.5, repeats: int = 21, clock: str = "wall"
) -> list[dict]:
    """One row per (op, N, backend): ``op, n, threads, device, backend, median_ms, kept, agree``.

    ``clock``: ``"wall"`` (time.perf_counter) or ``"cpu"`` (time.process_time: CPU time of all
    threads, robust to other processes competing for the cores). ``agree``: see the module docstring
    (None without torchvision and for torchvision itself).
    """
    torch.set_num_threads(threads)
    timer = time.perf_counter if clock == "wall" else time.process_time
    tv = _torchvision_ops()
    rows = []
    for n in SIZES:
        segments, scores, labels = make_detections(n, device=device)
        boxes = as_boxes(segments)
        cases: dict[str, dict[str, Callable[[], torch.Tensor]]] = {
            "nms_1d": {"fallback": lambda s=segments, p=scores: nms_1d_reference(s, p, iou_threshold)},
            "batched_nms_1d": {
                "fallback": lambda s=segments, p=scores, c=labels: batched_nms_1d_reference(
                    s, p, c, iou_threshold
                )
            },
        }
        if _extension.use_compiled(segments):
            cases["nms_1d"]["compiled"] = lambda s=segments, p=scores: nms_1d(s, p, iou_threshold)
            cases["batched_nms_1d"]["compiled"] = lambda s=segments, p=scores, c=labels: batched_nms_1d(
                s, p, c, iou_threshold
            )
        if tv is not None:
            cases["nms_1d"]["torchvision"] = lambda b=boxes, p=scores: tv.nms(b, p, iou_threshold)
            cases["batched_nms_1d"]["torchvision"] = lambda b=boxes, p=scores, c=labels: tv.batched_nms(
                b, p, c, iou_threshold
            )
        for op, backends in cases.items():
            kept = {name: fn() for name, fn in backends.items()}  # also the warm-up
            # The fallback takes seconds at N = 20,000: one timed call; the others take turns.
            fallback = backends.pop("fallback")
            medians = median_ms(backends, repeats, device, timer)
            medians["fallback"] = time_ms(fallback, device, timer)
            for backend, median in medians.items():
                expected = kept.get("torchvision")
                agree = None
                if expected is not None and backend != "torchvision":
                    agree = same_selection(kept[backend], expected, scores)
                rows.append(
                    {
                        "op": op,
                        "n": n,
                        "threads": threads,
                        "device": device,
                        "backend": backend,
                        "median_ms": median,
                        "kept": int(kept[backend].numel()),
                        "agree": agree,
                    }
                )
    return rows


def format_rows(rows: list[dict]) -> str:
    reference = {
        (r["op"], r["n"], r["threads"], r["device"]): r["median_ms"]
        for r in rows
        if r["backend"] == "torchvision"
    }
    header = ("op", "N", "thr", "dev", "backend", "median ms", "vs tv", "kept", "agree")
    lines = ["{:<15} {:>6} {:>3} {:<4} {:<11} {:>10} {:>7} {:>6} {}".format(*header)]
    for r in rows:
        tv_ms = reference.get((r["op"], r["n"], r["threads"], r["device"]))
        speedup = f"{tv_ms / r['median_ms']:6.1f}x" if tv_ms and r["backend"] != "torchvision" else ""
        agree = "" if r["agree"] is None else ("yes" if r["agree"] else "NO")
        lines.append(
            f"{r['op']:<15} {r['n']:>6} {r['threads']:>3} {r['device']:<4} {r['backend']:<11} "
            f"{r['median_ms']:>10.3f} {speedup:>7} {r['kept']:>6} {agree}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    parser.add_argument("--device", nargs="+", default=["cpu"], choices=["cpu", "cuda"])
    parser.add_argument("--iou", type=float, default=0.5, help="IoU threshold (default 0.5)")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall", help="wall time or process CPU time"
    )
    args = parser.parse_args()
    kernels = "loaded" if _extension.STATUS.loaded else "NOT loaded"
    torchvision = "yes" if _torchvision_ops() is not None else "not importable"
    print(
        f"torch {torch.__version__}, compiled kernels: {kernels}, torchvision: {torchvision}, IoU {args.iou}"
    )
    rows = []
    for device in args.device:
        for threads in dict.fromkeys(args.threads):
            rows += run(threads, device, args.iou, args.repeats, args.clock)
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
