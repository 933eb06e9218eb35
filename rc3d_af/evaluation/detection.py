"""Detection mAP: the ActivityNet protocol and the evaluation entry point for both protocols.

ActivityNet protocol (official ``eval_detection.py``): per class, predictions by decreasing
score; each takes the still-unmatched ground truth (same video, same class) of highest tIoU,
provided tIoU >= threshold; otherwise it is a false positive. AP is interpolated: the area under
the precision envelope, summed over recall steps. mAP is the mean over the classes that have
ground truth in the evaluated subset. Predictions on videos without ground truth in the subset
are false positives; segments are not clipped; duplicate ground truths are kept.

Tie rule (``tie_rule``, see ``ranking.py``): ``"official"`` (default) ranks each class's
predictions, taken in input order (videos in order of first appearance in the results, detections
of a video in file order, as the official code builds its per-class table), by numpy's default
argsort of the scores, reversed, and visits the ground truths of a prediction (its class and
video, annotation order) by the default argsort of their tIoUs, reversed: the official code's
orders, which for tied values depend on numpy and the CPU. ``"stable"``: ties in input order, and
among ground truths of equal tIoU the one listed first; deterministic everywhere. The kit protocol
has its own deterministic order (``thumos14.py``). A zero-length prediction on an identical
zero-length ground truth has IoU 0 here (the official code computes 0/0 = NaN and then matches it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

import numpy as np

from rc3d_af.data.annotations import AnnotationSet
from rc3d_af.errors import InputError
from rc3d_af.evaluation.duration import DEFAULT_BUCKETS, Bucket, BucketRule, bucket_selections
from rc3d_af.evaluation.inputs import (
    DetectionInputs,
    UnknownVideos,
    build_inputs,
    candidate_pairs,
    same_key_pairs,
)
from rc3d_af.evaluation.iou import segment_iou_np
from rc3d_af.evaluation.matching import greedy_match, interpolated_average_precision
from rc3d_af.evaluation.ranking import TieRule, check_tie_rule, grouped_rank
from rc3d_af.evaluation.results import Results
from rc3d_af.evaluation.thresholds import THUMOS14_TIOU, format_thresholds, parse_thresholds
from rc3d_af.evaluation.thumos14 import thumos14_protocol

Protocol = Literal["activitynet", "thumos14"]
PROTOCOLS: tuple[str, ...] = ("activitynet", "thumos14")

__all__ = ["PROTOCOLS", "activitynet_protocol", "evaluate_detections"]


def activitynet_protocol(
    inputs: DetectionInputs, thresholds: Sequence[float], tie_rule: TieRule = "official"
) -> dict[str, np.ndarray]:
    """Per-class interpolated AP. Returns dict with ``ap`` (T, C) (NaN: class without ground
    truth), ``tp`` (T, P) bool and ``rank`` (P,) (ranking position within the prediction's class)."""
    check_tie_rule(tie_rule)
    rank = grouped_rank(inputs.pred_scores, inputs.pred_class, tie_rule)
    pred_index, gt_index, iou = candidate_pairs(inputs, "activitynet")
    if tie_rule == "stable":
        preference = gt_index
    else:
        preference = official_gt_preference(inputs, pred_index, gt_index, iou)
    matched = greedy_match(pred_index, gt_index, iou, rank, preference, len(inputs.gt_class), thresholds,
                           strict=False)
    tp = matched >= 0
    ap = interpolated_average_precision(tp, inputs.pred_class, rank, inputs.num_positives)
    return {"ap": ap, "tp": tp, "rank": rank}


def official_gt_preference(
    inputs: DetectionInputs, pred_index: np.ndarray, gt_index: np.ndarray, iou: np.ndarray
) -> np.ndarray:
    """(K,) the official visiting order of each candidate pair's ground truth among those of its
    prediction (lower first; only its order among pairs of equal IoU matters).

    The official code visits a prediction's ground truths (same class and video, annotation order,
    zero-tIoU ones included) by ``np.argsort(tiou)[::-1]``. Only predictions with two candidates of
    exactly equal tIoU need that argsort; they are redone one by one on the same arrays.
    """
    preference = gt_index.copy()
    by_pred = np.lexsort((iou, pred_index))
    tie = (pred_index[by_pred][1:] == pred_index[by_pred][:-1]) & (iou[by_pred][1:] == iou[by_pred][:-1])
    tied = np.unique(pred_index[by_pred][1:][tie])
    if not tied.size:
        return preference
    num_classes, num_gt = len(inputs.class_names), len(inputs.gt_class)
    # Every ground truth of each tied prediction's class and video, zero tIoU included.
    row, gt = same_key_pairs(inputs.pred_video[tied] * num_classes + inputs.pred_class[tied],
                             inputs.gt_video * num_classes + inputs.gt_class)
    tiou = segment_iou_np(inputs.pred_segments[tied[row]], inputs.gt_segments[gt], aligned=True)
    position = np.empty(len(row), dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    for start, stop in zip(starts, [*starts[1:], len(row)], strict=True):
        visit = np.argsort(tiou[start:stop])[::-1]
        position[start + visit] = np.arange(stop - start)
    key = tied[row] * num_gt + gt  # increasing: rows follow ``tied``, ground truths ascending
    chosen = np.isin(pred_index, tied)
    preference[chosen] = position[np.searchsorted(key, pred_index[chosen] * num_gt + gt_index[chosen])]
    return preference


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
    tie_rule: TieRule = "official",
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
        tie_rule: ranking of tied scores and tIoUs under the ActivityNet protocol: ``"official"``
            (as eval_detection.py, numpy- and CPU-dependent) or ``"stable"`` (input order; see
            ``ranking.py``). The kit protocol has one deterministic order and ignores it.

    Raises:
        InputError: also when the results have predictions but none of their labels is a class of
            the ground truth (e.g. THUMOS ids against class names).
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")
    check_tie_rule(tie_rule)
    thresholds = parse_thresholds(tiou_thresholds)
    gt = ground_truth.subset(subset) if subset is not None else ground_truth
    inputs = build_inputs(gt, results, unknown_videos=unknown_videos, clip_to_duration=clip_to_duration)
    _check_some_label_known(inputs, results.source)
    run: Callable[[DetectionInputs, Sequence[float]], dict[str, np.ndarray]] = (
        partial(activitynet_protocol, tie_rule=tie_rule) if protocol == "activitynet" else thumos14_protocol)
    outcome = run(inputs, thresholds)
    report = _summary(inputs, outcome, thresholds)
    report = {
        "protocol": protocol,
        "subset": subset,
        "tiou_thresholds": list(thresholds),
        "tiou_range": format_thresholds(thresholds),
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
                    "duration_rule": duration_rule if by_duration else None,
                    "tie_rule": tie_rule if protocol == "activitynet" else "kit"},
    }
    if protocol == "thumos14":
        report["ambiguous_intervals"] = len(inputs.ambiguous_video)
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


def _check_some_label_known(inputs: DetectionInputs, source: str) -> None:
    """A results file whose every label is unknown uses another label set: say so, naming both."""
    if len(inputs.pred_class) or not inputs.unknown_labels:
        return
    found = sorted(inputs.unknown_labels, key=lambda label: -inputs.unknown_labels[label])
    raise InputError(
        f"{source}: none of its {sum(inputs.unknown_labels.values())} predictions has a label that is a "
        f"class of the ground truth: results labels {_examples(found)}; ground-truth classes "
        f"{_examples(inputs.class_names)} (different label sets: class names vs ids, or another "
        "dataset's classes?)"
    )


def _examples(labels: Sequence[str], count: int = 5) -> str:
    shown = ", ".join(repr(label) for label in labels[:count])
    return f"[{shown}{', ...' if len(labels) > count else ''}] ({len(labels)} in all)"


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
