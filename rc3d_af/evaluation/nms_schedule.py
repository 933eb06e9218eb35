"""R-C3D's tIoU-dependent NMS schedule: an explicit evaluation option, never the default.

R-C3D's THUMOS14 evaluation script applies, before scoring at tIoU ``t``, one more per-class NMS to
every video's detections at IoU ``t - 0.1`` (0.0 .. 0.6 for t = 0.1 .. 0.7), so each threshold is
scored on differently pruned detections. Its numbers are therefore not comparable with a protocol
that scores one set of detections at every threshold; reports made this way say so in
``options.nms_schedule``. :func:`evaluate_with_nms_schedule` scores each threshold on its own
pruned results and stitches the per-threshold reports into the usual layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import torch

from rc3d_af.evaluation.results import Results
from rc3d_af.ops import batched_nms_1d

__all__ = ["RC3D_OFFSET", "evaluate_with_nms_schedule", "per_class_nms", "schedule_iou"]

RC3D_OFFSET = Decimal("0.1")  # NMS IoU = tIoU - 0.1 in R-C3D's script


def schedule_iou(tiou: float) -> float:
    """The NMS IoU R-C3D's script uses before scoring at ``tiou`` (exact decimals, at least 0)."""
    return float(max(Decimal(str(tiou)) - RC3D_OFFSET, Decimal(0)))


def per_class_nms(results: Results, iou_threshold: float) -> Results:
    """Every video's detections after per-class NMS at ``iou_threshold`` (kept in score order)."""
    pruned = Results(source=f"{results.source} (per-class NMS at IoU {iou_threshold:g})")
    for video_id, video in results.videos.items():
        names = sorted(set(video.labels))
        labels = torch.tensor([names.index(label) for label in video.labels], dtype=torch.int64)
        keep = batched_nms_1d(
            torch.from_numpy(video.segments), torch.from_numpy(video.scores), labels, iou_threshold
        ).numpy()
        pruned.add(video_id, video.segments[keep], video.scores[keep], [video.labels[i] for i in keep])
    return pruned


def evaluate_with_nms_schedule(
    ground_truth: Any, results: Results, subset: str | None, thresholds: Sequence[float], **options: Any
) -> dict[str, Any]:
    """``evaluate_detections`` with R-C3D's schedule: threshold ``t`` scored on ``results`` after
    per-class NMS at ``t - 0.1``; ``options`` are passed on. Returns the usual report layout (each
    per-threshold list from its own pass; the predictions scored at each threshold in
    ``predictions_per_tiou``, ``predictions`` those given)."""
    from rc3d_af.evaluation.detection import evaluate_detections

    reports = [
        evaluate_detections(ground_truth, per_class_nms(results, schedule_iou(t)), subset, [t], **options)
        for t in thresholds
    ]
    report = _stitch(reports)
    report["predictions_per_tiou"] = [r["predictions"] for r in reports]
    report["predictions"] = report["predictions_in_results"] = results.num_predictions
    _average(report)
    for details in (report.get("by_duration_details") or {}).values():
        _average(details)
    report["options"]["nms_schedule"] = {
        "name": "rc3d",
        "nms_iou": [schedule_iou(t) for t in thresholds],
        "note": "R-C3D's THUMOS14 script: per-class NMS at tIoU - 0.1 before scoring each threshold; "
        "not comparable with single-NMS numbers",
    }
    return report


def _stitch(reports: list[Any]) -> Any:
    """Per-threshold reports (one threshold each) -> one: one-element lists concatenated, mappings
    stitched key by key, equal values kept, differing scalars listed per threshold."""
    first = reports[0]
    if isinstance(first, dict):
        return {key: _stitch([r[key] for r in reports]) for key in first}
    if isinstance(first, list) and all(isinstance(r, list) and len(r) == 1 for r in reports):
        return [r[0] for r in reports]
    return first if all(r == first for r in reports) else list(reports)


def _average(report: dict[str, Any]) -> None:
    """Recompute the averages of a stitched report from its per-threshold mAP."""
    values = [v for v in report["mAP"] if v is not None]
    report["average_mAP"] = float(np.mean(values)) if values else None
    if "average_mAP_0.3_0.7" in report:
        report.pop("average_mAP_0.3_0.7")
        tious = report["tiou_thresholds"]
        if len(tious) == 7:
            report["average_mAP_0.3_0.7"] = float(np.mean(report["mAP"][2:]))
