"""A2Net model benchmark: size, compute, latency, throughput and the post-processing share.

For the paper configuration (THUMOS14: 20 classes, 2048-d I3D features, 128-feature windows) it
reports the parameter count and multiply-accumulates per window (the paper's "FLOPs": 1.24 G), then
on each requested device:

- inference latency per window at batch 1 (the paper: 13.24 ms on a TITAN Xp),
- inference throughput at batch 32 (windows/s),
- training-step time and throughput at batch 32 (forward, losses, backward, Adam step),
- the share of a video's inference spent in post-processing: a video of ``--video-windows``
  windows goes through forward (batch 32), per-window decoding (``A2Net.predict``) and the video
  merge with per-class NMS (``video_detections``). Untrained weights keep every candidate (756 per
  window), the worst case for NMS; a trained model keeps fewer.

Usage::

    python benchmarks/model.py [--device cpu cuda] [--repeat 3] [--amp] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from rc3d_af.data.features import FeatureSpec
from rc3d_af.models import ModelConfig, build_model, model_summary, video_detections

NUM_CLASSES, IN_CHANNELS, WINDOW = 20, 2048, 128


def timed(fn: Callable[[], Any], device: torch.device, repeat: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in seconds (CUDA work synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def ground_truth(batch: int, device: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Two actions per window (a short and a long one), THUMOS14-like."""
    segments = torch.tensor([[10.0, 22.0], [40.0, 100.0]], device=device)
    labels = torch.tensor([3, 11], device=device)
    return [segments] * batch, [labels] * batch


def bench_device(cfg: ModelConfig, device: torch.device, args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_model(cfg, NUM_CLASSES, IN_CHANNELS).to(device)
    autocast = torch.autocast(device.type, enabled=args.amp and device.type == "cuda")
    one = torch.randn(1, IN_CHANNELS, WINDOW, device=device)
    batch = torch.randn(args.batch, IN_CHANNELS, WINDOW, device=device)
    result: dict[str, float] = {}

    model.eval()
    with torch.no_grad(), autocast:
        result["latency_ms_b1"] = 1e3 * timed(lambda: model(one), device, args.repeat * 3)
        t = timed(lambda: model(batch), device, args.repeat)
    result["inference_windows_per_s_b32"] = args.batch / t

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and device.type == "cuda")
    gt_segments, gt_labels = ground_truth(args.batch, device)

    def train_step() -> None:
        with autocast:
            terms = model.losses(model(batch), gt_segments, gt_labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(terms["total"]).backward()
        scaler.step(optimizer)
        scaler.update()

    t = timed(train_step, device, args.repeat)
    result["train_step_ms_b32"] = 1e3 * t
    result["train_windows_per_s_b32"] = args.batch / t
    result.update(postprocess_share(model, device, args, autocast))
    return result


def postprocess_share(
    model: torch.nn.Module, device: torch.device, args: argparse.Namespace, autocast: torch.autocast
) -> dict[str, float]:
    """Forward vs decoding vs video merge (NMS) for one video of ``args.video_windows`` windows."""
    model.eval()
    features = torch.randn(args.video_windows, IN_CHANNELS, WINDOW, device=device)
    spec = FeatureSpec()
    chunks = features.split(args.batch)
    outputs: list[dict[str, torch.Tensor]] = []
    windows: list = []

    def forward() -> None:
        outputs.clear()
        with torch.no_grad(), autocast:
            outputs.extend(model(chunk) for chunk in chunks)

    def decode() -> None:
        windows.clear()
        for out in outputs:
            for detections in model.predict(out):
                start_index = len(windows) * WINDOW // 2  # test stride: half a window
                windows.append((detections, start_index, 1.0))

    def merge() -> None:
        video_detections(windows, 30.0, spec, model.cfg)

    t_forward = timed(forward, device, args.repeat)
    t_decode = timed(decode, device, args.repeat)
    t_merge = timed(merge, device, args.repeat)
    total = t_forward + t_decode + t_merge
    return {
        "video_candidates": float(sum(len(d) for d, _, _ in windows)),
        "video_forward_ms": 1e3 * t_forward,
        "video_decode_ms": 1e3 * t_decode,
        "video_merge_nms_ms": 1e3 * t_merge,
        "postprocess_share": (t_decode + t_merge) / total,
    }


def format_table(summary: dict[str, Any], results: dict[str, dict[str, float]]) -> str:
    lines = [
        f"A2Net ({summary['config']}): {summary['parameters'] / 1e6:.2f} M parameters, "
        f"{summary['macs_per_window'] / 1e9:.3f} GMACs per {WINDOW}-feature window (paper: 1.24 G), "
        f"{summary['anchors_per_window']} anchors, {summary['points_per_window']} points",
        "",
        "| metric | " + " | ".join(results) + " |",
        "|---|" + "---|" * len(results),
    ]
    rows = [
        ("inference latency, batch 1 (ms/window)", "latency_ms_b1", "{:.2f}"),
        ("inference throughput, batch 32 (windows/s)", "inference_windows_per_s_b32", "{:.1f}"),
        ("training step, batch 32 (ms)", "train_step_ms_b32", "{:.0f}"),
        ("training throughput, batch 32 (windows/s)", "train_windows_per_s_b32", "{:.1f}"),
        ("video: candidates before NMS", "video_candidates", "{:.0f}"),
        ("video: forward (ms)", "video_forward_ms", "{:.1f}"),
        ("video: decode (ms)", "video_decode_ms", "{:.1f}"),
        ("video: merge + NMS (ms)", "video_merge_nms_ms", "{:.1f}"),
        ("video: post-processing share", "postprocess_share", "{:.1%}"),
    ]
    for title, key, fmt in rows:
        lines.append(f"| {title} | " + " | ".join(fmt.format(r[key]) for r in results.values()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", nargs="+", default=["cpu"], help="devices to time (cpu, cuda)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--video-windows", type=int, default=64, help="windows in the post-processing video")
    parser.add_argument("--amp", action="store_true", help="autocast (CUDA only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--width-multiplier", type=float, default=1.0, help="channel scale (paper: 1.0)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = ModelConfig(width_multiplier=args.width_multiplier)
    summary = model_summary(cfg, NUM_CLASSES, IN_CHANNELS, WINDOW)
    summary["config"] = "paper configuration" if cfg == ModelConfig() else f"width x{cfg.width_multiplier:g}"
    results = {}
    for name in args.device:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            print(f"skipping {name}: no CUDA device", file=sys.stderr)
            continue
        if device.type == "cuda":
            label = torch.cuda.get_device_name(device) + (" amp" if args.amp else "")
        else:
            label = f"cpu ({torch.get_num_threads()} threads)"
        results[label] = bench_device(cfg, device, args)
    print(format_table(summary, results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
