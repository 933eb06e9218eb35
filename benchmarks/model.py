"""Model benchmark, A2Net beside R-C3D + AF: size, compute, latency, throughput and stage shares.

For the paper configurations (THUMOS14: 20 classes, 2048-d I3D features; A2Net on 128-feature
windows, R-C3D + AF on 192-feature buffers) it reports parameters and multiply-accumulates per
window, then on each requested device and for each model:

- inference latency per window at batch 1 (A2Net paper: 13.24 ms on a TITAN Xp),
- inference throughput at batch 32 (windows/s),
- training-step time and throughput at batch 32 (forward, losses, backward, optimizer step),
- where one video's inference time goes (``--video-windows`` windows, batch 32):
  A2Net: forward, per-window decoding (``predict``), video merge with per-class NMS;
  R-C3D + AF: backbone + proposal network, proposal selection (the NMS), RoI pooling, the second
  stage (fc head, decoding and its per-class NMS), video merge.
Untrained weights keep every candidate, the worst case for NMS; a trained model keeps fewer.

Usage::

    python benchmarks/model.py [--arch a2net rc3d_af] [--device cpu cuda] [--repeat 3] [--amp]
                               [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from rc3d_af.data.features import FeatureSpec
from rc3d_af.models import ModelConfig, build_model, model_summary, video_detections
from rc3d_af.models.rc3d import RC3DConfig

NUM_CLASSES, IN_CHANNELS = 20, 2048
WINDOWS = {"a2net": 128, "rc3d_af": 192, "rc3d": 192}


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


def paper_config(arch: str, width: float) -> ModelConfig | RC3DConfig:
    """The THUMOS14 configuration of ``arch``; ``width`` scales every channel count."""
    if arch == "a2net":
        return ModelConfig(width_multiplier=width)
    cfg = RC3DConfig(arch=arch)
    channels = max(1, round(512 * width))
    return dataclasses.replace(
        cfg,
        backbone=dataclasses.replace(cfg.backbone, channels=channels),
        apn=dataclasses.replace(cfg.apn, channels=channels),
        af=dataclasses.replace(cfg.af, head_channels=channels),
        roi=dataclasses.replace(cfg.roi, fc_channels=max(1, round(4096 * width))),
    )


def ground_truth(batch: int, device: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Two actions per window (a short and a long one), THUMOS14-like."""
    segments = torch.tensor([[10.0, 22.0], [40.0, 100.0]], device=device)
    labels = torch.tensor([3, 11], device=device)
    return [segments] * batch, [labels] * batch


def bench_device(cfg: Any, window: int, device: torch.device, args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_model(cfg, NUM_CLASSES, IN_CHANNELS).to(device)
    autocast = torch.autocast(device.type, enabled=args.amp and device.type == "cuda")
    one = torch.randn(1, IN_CHANNELS, window, device=device)
    batch = torch.randn(args.batch, IN_CHANNELS, window, device=device)
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
            total = sum(model(batch, gt_segments, gt_labels).values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()

    t = timed(train_step, device, args.repeat)
    result["train_step_ms_b32"] = 1e3 * t
    result["train_windows_per_s_b32"] = args.batch / t
    model.eval()
    stages = a2net_stages if isinstance(cfg, ModelConfig) else rc3d_stages
    result.update(video_shares(model, window, device, args, autocast, stages))
    return result


def a2net_stages(model: torch.nn.Module, chunks: list[torch.Tensor]) -> dict[str, Callable[[Any], Any]]:
    """One video through A2Net, stage by stage: each stage takes the previous one's output."""
    return {
        "forward": lambda _: [model.head_outputs(chunk) for chunk in chunks],
        "decode": lambda outputs: [d for out in outputs for d in model.predict(out)],
    }


def rc3d_stages(model: torch.nn.Module, chunks: list[torch.Tensor]) -> dict[str, Callable[[Any], Any]]:
    """One video through R-C3D + AF, stage by stage: each stage takes the previous one's output."""
    window = chunks[0].size(2)
    settings = model.cfg.proposals.settings(training=False)
    heads = model.roi_heads

    def dense(_: Any) -> list[tuple[torch.Tensor, dict]]:
        return [(b := model.backbone(chunk), model.proposal_network(b)) for chunk in chunks]

    def select(parts: list) -> list:
        return [(b, [p[0] for p in model.proposal_network.select(out, window, settings)]) for b, out in parts]

    def pool(parts: list) -> list:
        return [(heads.pooler(b, proposals), proposals) for b, proposals in parts]

    def second_stage(parts: list) -> list:
        return [
            d
            for pooled, proposals in parts
            for d in heads.detect_pooled(
                pooled, proposals, window, model.cfg.score_threshold, model.cfg.window_nms_iou
            )
        ]

    return {"backbone + proposal network": dense, "proposal selection (NMS)": select,
            "RoI pooling": pool, "second stage": second_stage}  # fmt: skip


def video_shares(
    model: torch.nn.Module,
    window: int,
    device: torch.device,
    args: argparse.Namespace,
    autocast: torch.autocast,
    stages: Callable[[torch.nn.Module, list[torch.Tensor]], dict[str, Callable[[Any], Any]]],
) -> dict[str, float]:
    """Milliseconds and share of each inference stage (then the video merge) for one video."""
    features = torch.randn(args.video_windows, IN_CHANNELS, window, device=device)
    steps = stages(model, list(features.split(args.batch)))
    out: dict[str, float] = {}
    value: Any = None
    with torch.no_grad(), autocast:
        for name, step in steps.items():
            previous = value
            out[f"video: {name} (ms)"] = 1e3 * timed(
                lambda step=step, previous=previous: step(previous), device, args.repeat
            )
            value = step(previous)
    windows = [(d, i * window // 2, 1.0) for i, d in enumerate(value)]
    out["video: candidates before the video NMS"] = float(sum(len(d) for d, _, _ in windows))
    out["video: merge + NMS (ms)"] = 1e3 * timed(
        lambda: video_detections(windows, 30.0, FeatureSpec(), model.cfg), device, args.repeat
    )
    total = sum(v for k, v in out.items() if k.endswith("(ms)"))
    for key in [k for k in out if k.endswith("(ms)")]:
        out[key.replace("(ms)", "share")] = out[key] / total
    return out


def format_table(summaries: dict[str, dict[str, Any]], results: dict[str, dict[str, float]]) -> str:
    lines = [
        f"{arch} ({WINDOWS[arch]}-feature windows): {s['parameters'] / 1e6:.2f} M parameters, "
        f"{s['macs_per_window'] / 1e9:.3f} GMACs per window, {s['anchors_per_window']} anchors, "
        f"{s['points_per_window']} points"
        + (f", {s['rois_per_window']} RoIs" if "rois_per_window" in s else "")
        for arch, s in summaries.items()
    ]
    lines += ["", "| metric | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    keys = list(dict.fromkeys(k for r in results.values() for k in r))
    names = {
        "latency_ms_b1": "inference latency, batch 1 (ms/window)",
        "inference_windows_per_s_b32": "inference throughput, batch 32 (windows/s)",
        "train_step_ms_b32": "training step, batch 32 (ms)",
        "train_windows_per_s_b32": "training throughput, batch 32 (windows/s)",
    }
    for key in keys:
        fmt = "{:.1%}" if key.endswith("share") else ("{:.0f}" if "candidates" in key else "{:.1f}")
        cells = [fmt.format(r[key]) if key in r else "" for r in results.values()]
        lines.append(f"| {names.get(key, key)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["a2net", "rc3d_af"], choices=list(WINDOWS))
    parser.add_argument("--device", nargs="+", default=["cpu"], help="devices to time (cpu, cuda)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--video-windows", type=int, default=64, help="windows in the stage-share video")
    parser.add_argument("--amp", action="store_true", help="autocast (CUDA only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--width-multiplier", type=float, default=1.0, help="channel scale (paper: 1.0)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    summaries, results = {}, {}
    for arch in args.arch:
        cfg = paper_config(arch, args.width_multiplier)
        summaries[arch] = model_summary(cfg, NUM_CLASSES, IN_CHANNELS, WINDOWS[arch])
        for name in args.device:
            device = torch.device(name)
            if device.type == "cuda" and not torch.cuda.is_available():
                print(f"skipping {name}: no CUDA device", file=sys.stderr)
                continue
            if device.type == "cuda":
                label = torch.cuda.get_device_name(device) + (" amp" if args.amp else "")
            else:
                label = f"cpu ({torch.get_num_threads()} threads)"
            results[f"{arch}, {label}"] = bench_device(cfg, WINDOWS[arch], device, args)
    print(format_table(summaries, results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summaries": summaries, "results": results, "args": vars(args)}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
