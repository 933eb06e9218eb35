"""Table III and Table I on one dataset: anchor-free only, anchor-based only, their late fusion, and A2Net.

Trains ``model.variant`` = anchor_free, anchor_based and a2net from the same config (same data, seed
and schedule) into ``<out>/<variant>``, fuses the two single-branch models at inference (both
candidate sets, scores x 0.5 each, then the usual per-video NMS: the paper's "fuse" row), evaluates
all four on the test split and prints mAP at every tIoU (Table III) beside mAP@0.5 per duration
bucket (Table I). A variant whose run directory already holds a finished ``last.pt`` is not
retrained (an unfinished one is resumed), so an interrupted ablation continues where it stopped.
Everything is written to ``<out>/ablation.json``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rc3d_af.commands.train import add_config_arguments

VARIANTS = ("anchor_free", "anchor_based", "a2net")
ROWS = {"anchor_free": "anchor-free", "anchor_based": "anchor-based", "fuse": "fuse (late)", "a2net": "A2Net"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--out", type=Path, default=Path("runs/ablation"), help="output folder (default: %(default)s)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


def run(args: argparse.Namespace) -> int:
    from rc3d_af.config import load_config
    from rc3d_af.engine.inference import assemble_videos, evaluate_results, predict_windows
    from rc3d_af.evaluation import write_json
    from rc3d_af.models import fuse_detections

    base = load_config(args.config, args.overrides)
    reports, window_detections = {}, {}
    for variant in VARIANTS:
        cfg = load_config(args.config, [*args.overrides, f"model.variant={variant}"])
        trainer = _trained(cfg, args.out / variant, progress=not args.no_progress)
        with trainer:
            dataset = trainer.test_set
            detections = predict_windows(
                trainer.model, dataset, batch_size=cfg.test.batch_size, device=trainer.device, amp=trainer.amp
            )
            results = assemble_videos(
                detections, dataset, trainer.annotations, cfg.data.feature_spec, cfg.model
            )
            reports[variant] = evaluate_results(cfg, trainer.annotations, results)
            window_detections[variant] = detections
            annotations = trainer.annotations
    # Late fusion: the two single-branch models' candidates, merged per window, then NMS per video
    # with the A2Net config's settings (the same NMS as the joint model).
    fused = fuse_detections(window_detections["anchor_free"], window_detections["anchor_based"])
    fused_results = assemble_videos(fused, dataset, annotations, base.data.feature_spec, base.model)
    reports["fuse"] = evaluate_results(base, annotations, fused_results)

    order = ["anchor_free", "anchor_based", "fuse", "a2net"]
    write_json({name: reports[name] for name in order}, args.out / "ablation.json")
    print(format_tables({name: reports[name] for name in order}, base.test.select_tiou))
    print(f"\nreports in {args.out / 'ablation.json'}")
    return 0


def _trained(cfg, run_dir: Path, progress: bool):
    """A Trainer whose model has finished ``train.epochs`` (trained, resumed or reused)."""
    from rc3d_af.engine.checkpoint import load_checkpoint
    from rc3d_af.engine.trainer import Trainer

    last = run_dir / "last.pt"
    resume = last.is_file()
    trainer = Trainer(cfg, run_dir, resume=resume, progress=progress)
    if resume and int(load_checkpoint(last)["epoch"]) >= cfg.train.epochs:
        trainer.logger.info("%s: reusing the finished run in %s", cfg.model.variant, run_dir)
    else:
        trainer.fit()
    return trainer


def format_tables(reports: dict[str, dict], duration_tiou: float = 0.5) -> str:
    """Table III (mAP per tIoU, %) and Table I (mAP@``duration_tiou`` per duration bucket, %) side by side."""
    first = next(iter(reports.values()))
    tious = first["tiou_thresholds"]
    column = next(i for i, t in enumerate(tious) if math.isclose(t, duration_tiou))
    buckets = list(first.get("by_duration") or {})
    left = f"{'method':<14}" + "".join(f"{t:>7g}" for t in tious) + f"{'avg':>7}"
    right = "".join(f"{b:>7}" for b in buckets)
    lines = [
        f"{'Table III: mAP (%) at tIoU':<{len(left)}}   Table I: mAP@{duration_tiou:g} (%) by duration",
        f"{left}   {right}",
    ]
    for name, report in reports.items():
        row = f"{ROWS.get(name, name):<14}" + "".join(f"{_pct(v):>7}" for v in report["mAP"])
        row += f"{_pct(report['average_mAP']):>7}"
        by_duration = report.get("by_duration") or {}
        row += "   " + "".join(f"{_pct(by_duration[b][column]):>7}" for b in buckets)
        lines.append(row)
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"
