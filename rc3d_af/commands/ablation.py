"""Ablation tables on one dataset, mean +- std over seeds: A2Net's Table III / I or R-C3D's Table XII / XIII.

For an A2Net config (``model.arch: a2net``): ``model.variant`` = anchor_free, anchor_based and
a2net trained from the same config (same data and schedule), plus the late fusion of the two
single-branch models (both candidate sets, scores x 0.5 each, then the usual video NMS: the
paper's "fuse" row); mAP at every tIoU (Table III) beside mAP@``test.select_tiou`` per duration
bucket (Table I). For an R-C3D config (``rc3d`` or ``rc3d_af``): R-C3D and R-C3D + AF with every
other setting equal; mAP at every tIoU (Table XII), the proposal network's AR@AN and AUC (Table
XIII, THUMOS14 tIoU 0.5:0.05:1.0, 1000 proposals per video) and mAP per duration bucket.

Each row is trained once per seed (``train.seed``) into ``<out>/<row>/seed<k>``; every number is
reported as the mean and the sample standard deviation over the seeds. A run folder that already
holds a finished ``last.pt`` is reused (an unfinished one is resumed), so an interrupted ablation
continues where it stopped. Everything is written to ``<out>/ablation.json``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rc3d_af.commands.train import add_config_arguments

A2NET_ROWS = {
    "anchor_free": "anchor-free",
    "anchor_based": "anchor-based",
    "fuse": "fuse (late)",
    "a2net": "A2Net",
}
RC3D_ROWS = {"rc3d": "R-C3D", "rc3d_af": "R-C3D + AF"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--out", type=Path, default=Path("runs/ablation"), help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--seeds", default="0,1,2", help="training seeds, comma-separated (default: %(default)s)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


def run(args: argparse.Namespace) -> int:
    from rc3d_af.config import load_config
    from rc3d_af.evaluation import write_json
    from rc3d_af.models import ModelConfig

    base = load_config(args.config, args.overrides)
    seeds = _seeds(args.seeds)
    two_stage = not isinstance(base.model, ModelConfig)
    per_seed: dict[str, list[dict[str, Any]]] = {}
    for seed in seeds:
        overrides = [*args.overrides, f"train.seed={seed}"]
        reports = (_rc3d_reports if two_stage else _a2net_reports)(args, overrides, seed)
        for row, report in reports.items():
            per_seed.setdefault(row, []).append(report)
    summary = {row: summarize(reports) for row, reports in per_seed.items()}
    write_json({"seeds": list(seeds), "summary": summary, "per_seed": per_seed}, args.out / "ablation.json")
    rows = RC3D_ROWS if two_stage else A2NET_ROWS
    print(format_tables(summary, rows, base.test.select_tiou, num_seeds=len(seeds)))
    print(f"\nreports in {args.out / 'ablation.json'}")
    return 0


def _seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> distinct non-negative seeds."""
    from rc3d_af.errors import InputError

    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise InputError(f"--seeds: expected distinct non-negative integers such as 0,1,2, got {text!r}")
    return seeds


def _a2net_reports(args: argparse.Namespace, overrides: list[str], seed: int) -> dict[str, dict[str, Any]]:
    """One seed of Table III: the three variants and the late fusion of the single-branch two."""
    from rc3d_af.config import load_config
    from rc3d_af.engine.inference import assemble_videos, evaluate_results, predict_windows
    from rc3d_af.models import fuse_detections

    reports, window_detections = {}, {}
    for variant in ("anchor_free", "anchor_based", "a2net"):
        cfg = load_config(args.config, [*overrides, f"model.variant={variant}"])
        with _trained(cfg, args.out / variant / f"seed{seed}", progress=not args.no_progress) as trainer:
            dataset, annotations = trainer.test_set, trainer.annotations
            detections = predict_windows(
                trainer.inference_model, dataset, batch_size=cfg.test.batch_size, device=trainer.device,
                amp=trainer.amp, flush_denormal=cfg.train.flush_denormal,
            )  # fmt: skip
            results = assemble_videos(detections, dataset, annotations, cfg.data.feature_spec, cfg.model)
            reports[variant] = evaluate_results(cfg, annotations, results)
            window_detections[variant] = detections
    # Late fusion: the two single-branch models' candidates, merged per window, then NMS per video
    # with the joint model's settings (the same NMS as A2Net).
    fused = fuse_detections(window_detections["anchor_free"], window_detections["anchor_based"])
    fused_results = assemble_videos(fused, dataset, annotations, cfg.data.feature_spec, cfg.model)
    reports["fuse"] = evaluate_results(cfg, annotations, fused_results)
    return {row: reports[row] for row in A2NET_ROWS}


def _rc3d_reports(args: argparse.Namespace, overrides: list[str], seed: int) -> dict[str, dict[str, Any]]:
    """One seed of Tables XII and XIII: R-C3D and R-C3D + AF, detections and proposals."""
    from rc3d_af.config import load_config
    from rc3d_af.engine.inference import evaluate_results, infer_proposals, infer_split
    from rc3d_af.evaluation.proposals import evaluate_proposals
    from rc3d_af.evaluation.thresholds import THUMOS14_PROPOSAL_TIOU

    reports = {}
    for arch in RC3D_ROWS:
        cfg = load_config(args.config, [*overrides, f"model.arch={arch}"])
        with _trained(cfg, args.out / arch / f"seed{seed}", progress=not args.no_progress) as trainer:
            model, dataset, annotations = trainer.inference_model, trainer.test_set, trainer.annotations
            report = evaluate_results(
                cfg, annotations, infer_split(model, cfg, annotations, dataset, trainer.device)
            )
            proposals = infer_proposals(model, cfg, annotations, dataset, trainer.device)
            report["proposals"] = evaluate_proposals(
                annotations, proposals, cfg.data.test_subset, THUMOS14_PROPOSAL_TIOU  # Table XIII practice
            )
            reports[arch] = report
    return reports


def _trained(cfg, run_dir: Path, progress: bool):
    """A Trainer whose model has finished ``train.epochs`` (trained, resumed or reused)."""
    from rc3d_af.engine.checkpoint import load_checkpoint
    from rc3d_af.engine.trainer import Trainer

    last = run_dir / "last.pt"
    resume = last.is_file()
    trainer = Trainer(cfg, run_dir, resume=resume, progress=progress)
    if resume and int(load_checkpoint(last)["epoch"]) >= cfg.train.epochs:
        trainer.logger.info("reusing the finished run in %s", run_dir)
    else:
        trainer.fit()
    return trainer


def summarize(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation (0 for one seed) over the seeds of every number the tables
    show: ``mAP`` (per tIoU), ``average_mAP``, ``by_duration`` (per bucket, per tIoU) and, when
    present, the proposals' ``ar`` (per AN) and ``auc``."""
    first = reports[0]
    summary: dict[str, Any] = {
        "tiou_thresholds": first["tiou_thresholds"],
        "mAP": mean_std([r["mAP"] for r in reports]),
        "average_mAP": mean_std([r["average_mAP"] for r in reports]),
    }
    if first.get("by_duration"):
        summary["by_duration"] = {
            b: mean_std([r["by_duration"][b] for r in reports]) for b in first["by_duration"]
        }
    if "proposals" in first:
        proposals = [r["proposals"] for r in reports]
        summary["proposals"] = {
            "an": first["proposals"]["an"],
            "tiou_thresholds": first["proposals"]["tiou_thresholds"],
            "ar": mean_std([p["ar"] for p in proposals]),
            "auc": mean_std([p["auc"] for p in proposals]),
        }
    return summary


def format_tables(
    summary: dict[str, dict[str, Any]], rows: dict[str, str], duration_tiou: float = 0.5, num_seeds: int = 1
) -> str:
    """The mAP table (Table III / XII, %) beside mAP@``duration_tiou`` per duration bucket (Table I),
    then the proposal table (Table XIII) when the rows have proposals; cells are mean +- std."""
    first = next(iter(summary.values()))
    tious = first["tiou_thresholds"]
    column = next(i for i, t in enumerate(tious) if math.isclose(t, duration_tiou))
    buckets = list(first.get("by_duration") or {})
    names = {name: rows.get(name, name) for name in summary}
    width = max(14, *(len(n) + 2 for n in names.values()))
    seeds = f"mean +- std over {num_seeds} seed{'s' if num_seeds != 1 else ''}"
    lines = [f"mAP (%) at tIoU, {seeds}; right: mAP@{duration_tiou:g} (%) by ground-truth duration"]
    lines.append(f"{'method':<{width}}" + "".join(f"{t:>12g}" for t in tious) + f"{'avg':>12}   "
                 + "".join(f"{b:>12}" for b in buckets))  # fmt: skip
    for name, row in summary.items():
        cells = [mean_std_cell(row["mAP"], i) for i in range(len(tious))]
        cells.append(mean_std_cell(row["average_mAP"]))
        cells += [mean_std_cell(row["by_duration"][b], column) for b in buckets]
        lines.append(f"{names[name]:<{width}}" + "".join(f"{c:>12}" for c in cells[: len(tious) + 1]) + "   "
                     + "".join(f"{c:>12}" for c in cells[len(tious) + 1 :]))  # fmt: skip
    if "proposals" in first:
        an = first["proposals"]["an"]
        tiou = first["proposals"]["tiou_thresholds"]
        lines += ["", f"proposals: AR@AN (%) and AUC, tIoU {tiou[0]:g}..{tiou[-1]:g}, {seeds}"]
        lines.append(f"{'method':<{width}}" + "".join(f"{'AR@' + str(n):>12}" for n in an) + f"{'AUC':>12}")
        for name, row in summary.items():
            p = row["proposals"]
            cells = [mean_std_cell(p["ar"], i) for i in range(len(an))] + [mean_std_cell(p["auc"], scale=1.0)]
            lines.append(f"{names[name]:<{width}}" + "".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


def mean_std(values: Sequence[Any]) -> dict[str, Any]:
    """``{"mean", "std"}`` over the first axis of scalars or equal-length lists (one per seed): the
    mean and the sample standard deviation (ddof 1; 0 for one value). An undefined entry (None, as
    an mAP without ground truth) makes its column None."""
    array = np.asarray(values, dtype=np.float64)  # None becomes NaN
    std = array.std(axis=0, ddof=1) if len(array) > 1 else np.zeros_like(array[0])
    return {"mean": _plain(array.mean(axis=0)), "std": _plain(std)}


def _plain(values: np.ndarray) -> Any:
    """A float or a list of floats, NaN as None (valid JSON)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0:
        return None if np.isnan(values) else float(values)
    return [None if np.isnan(v) else float(v) for v in values]


def mean_std_cell(stats: dict[str, Any], index: int | None = None, scale: float = 100.0) -> str:
    """``mean+-std`` of entry ``index`` (or of a scalar) in percent; ``-`` where undefined."""
    mean, std = stats["mean"], stats["std"]
    if index is not None:
        mean, std = mean[index], std[index]
    if mean is None:
        return "-"
    return f"{scale * mean:.1f}+-{scale * std:.1f}"
