"""Detection mAP: the ActivityNet protocol and the evaluation entry point for both protocols.

ActivityNet protocol (official ``eval_detection.py``): per class, predictions by decreasing
score; each takes the still-unmatched ground truth (same video, same class) of highest tIoU,
provided tIoU >= threshold; otherwise it is a false positive. AP is interpolated: the area under
the precision envelope, summed over recall steps. mAP is the mean over the classes that have
ground truth in the evaluated subset. Predictions on videos without ground truth in the subset
are false positives; segments are not clipped; duplicate ground truths are kept.

Tie rule (both protocols; the official code sorts with an unstable quicksort, so its order under
tied scores is arbitrary): a stable sort by decreasing score, ties kept in input order (videos in
order of first appearance in the results, detections of a video in file order); the kit protocol
puts ties in video-name order first, as the kit does. Among ground truths with equal tIoU, the
one listed first in the annotations is taken. A zero-length prediction on an identical
zero-length ground truth has IoU 0 here (the official code computes 0/0 = NaN and then matches it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from rc3d_af.data.annotations import AnnotationSet
from rc3d_af.errors import InputError
from rc3d_af.evaluation.duration import DEFAULT_BUCKETS, Bucket, BucketRule, bucket_selections
from rc3d_af.evaluation.inputs import DetectionInputs, UnknownVideos, build_inputs, candidate_pairs
from rc3d_af.evaluation.matching import greedy_match, interpolated_average_precision
from rc3d_af.evaluation.results import Results
from rc3d_af.evaluation.thresholds import THUMOS14_TIOU, parse_thresholds
from rc3d_af.evaluation.thumos14 import thumos14_protocol

Protocol = Literal["activitynet", "thumos14"]
PROTOCOLS: tuple[str, ...] = ("activitynet", "thumos14")

__all__ = ["PROTOCOLS", "activitynet_protocol", "evaluate_detections", "score_rank"]


def score_rank(inputs: DetectionInputs) -> np.ndarray:
    """(P,) ranking position: stable sort by decreasing score, ties in input order."""
    order = np.lexsort((inputs.pred_order, -inputs.pred_scores))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def activitynet_protocol(inputs: DetectionInputs, thresholds: Sequence[float]) -> dict[str, np.ndarray]:
    """Per-class interpolated AP. Returns dict with ``ap`` (T, C) (NaN: class without ground
    truth), ``tp`` (T, P) bool and ``rank`` (P,)."""
    rank = score_rank(inputs)
    pred_index, gt_index, iou = candidate_pairs(inputs, "activitynet")
    matched = greedy_match(pred_index, gt_index, iou, rank, np.arange(len(inputs.gt_class)), thresholds,
                           strict=False)
    tp = matched >= 0
    ap = interpolated_average_precision(tp, inputs.pred_class, rank, inputs.num_positives)
    return {"ap": ap, "tp": tp, "rank": rank}


def evaluate_detections(
    ground_truth: AnnotationSet,
    results: Results,
    subset: str | None = None,
    tiou_thresholds: str | Sequence[float] = THUMOS14_TIOU,
    protocol: Protocol = "activitynet",
    by_duration: bool = False,
    *,
    buckets: Sequence[Bucket] = DEFAULT_BUCKETS,
    duration_rule: BucketRule = "same_class",
    unknown_videos: UnknownVideos = "false_positive",
    clip_to_duration: bool = False,
) -> dict[str, Any]:
    """Detection mAP; returns the ``rc3d-af evaluate --json`` layout (fractions in [0, 1]).

    Args:
        subset: evaluate only the ground-truth videos of this subset (None: all videos).
        tiou_thresholds: floats or a string such as ``"0.1:0.7:0.1"`` / ``"0.3,0.5"``.
        protocol: ``"activitynet"`` (official eval_detection.py) or ``"thumos14"`` (the kit).
        by_duration: add mAP per ground-truth duration bucket of ``buckets`` (see ``duration.py``
            for ``duration_rule``: which predictions take part in a bucket).
        unknown_videos: predictions on videos without ground truth in the subset count as false
            positives (official default) or are ignored.
        clip_to_duration: clip predictions to their video (the official evaluators do not).
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")
    thresholds = parse_thresholds(tiou_thresholds)
    gt = ground_truth.subset(subset) if subset is not None else ground_truth
    inputs = build_inputs(gt, results, unknown_videos=unknown_videos, clip_to_duration=clip_to_duration)
    run = activitynet_protocol if protocol == "activitynet" else thumos14_protocol
    outcome = run(inputs, thresholds)
    report = _summary(inputs, outcome, thresholds)
    report = {
        "protocol": protocol,
        "subset": subset,
        "tiou_thresholds": list(thresholds),
        **report,
        "predictions_in_results": results.num_predictions,
        "unknown_videos": {
            "videos": len(inputs.unknown_video_ids),
            "predictions": inputs.unknown_video_predictions,
            "handling": unknown_videos,
            "examples": inputs.unknown_video_ids[:5],
        },
        "unknown_labels": {"labels": dict(sorted(inputs.unknown_labels.items())),
                           "predictions": sum(inputs.unknown_labels.values())},
        "options": {"unknown_videos": unknown_videos, "clip_to_duration": clip_to_duration,
                    "duration_rule": duration_rule if by_duration else None},
    }
    if by_duration:
        details = {}
        selections = bucket_selections(inputs, buckets, protocol, duration_rule)
        for bucket, (gt_mask, pred_mask) in zip(buckets, selections, strict=True):
            part = inputs.select(gt_mask, pred_mask)
            high = bucket.high if np.isfinite(bucket.high) else None  # JSON has no infinity
            details[bucket.name] = {"range_s": [bucket.low, high],
                                    **_summary(part, run(part, thresholds), thresholds)}
        report["by_duration"] = {name: entry["mAP"] for name, entry in details.items()}
        report["by_duration_details"] = details
    return report


def _summary(inputs: DetectionInputs, outcome: dict[str, np.ndarray], thresholds: Sequence[float]) -> dict:
    """mAP over classes with ground truth, counts, per-class AP and (kit) dropped predictions."""
    ap = outcome["ap"]
    num_positives = inputs.num_positives
    scored = num_positives > 0
    mean_ap = ap[:, scored].mean(axis=1) if scored.any() else np.full(len(thresholds), np.nan)
    per_pred = np.bincount(inputs.pred_class, minlength=len(inputs.class_names))
    summary: dict[str, Any] = {
        "mAP": _floats(mean_ap),
        "average_mAP": _float(mean_ap.mean()),
        "videos": inputs.num_gt_videos,
        "ground_truths": int(num_positives.sum()),
        "predictions": len(inputs.pred_class),
        "classes_scored": int(scored.sum()),
        "per_class": {
            name: {"ground_truths": int(num_positives[c]), "predictions": int(per_pred[c]),
                   "AP": _floats(ap[:, c]) if scored[c] else None}
            for c, name in enumerate(inputs.class_names)
        },
    }
    if tuple(thresholds) == THUMOS14_TIOU:  # the paper's second THUMOS14 summary
        summary["average_mAP_0.3_0.7"] = _float(mean_ap[2:].mean())
    if "counted" in outcome:
        summary["ambiguous_dropped"] = [int(n) for n in (~outcome["counted"]).sum(axis=1)]
    return summary


def _float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _floats(values: np.ndarray) -> list[float | None]:
    return [_float(v) for v in values]
