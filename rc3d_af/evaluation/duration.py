"""Duration diagnostics (the paper's Table I): mAP per ground-truth duration bucket.

Default buckets, in seconds, by instance length ``end - start`` (the 20% quantiles of THUMOS14
test): ES [0, 1.5), S [1.5, 2.5), M [2.5, 4.2), L [4.2, 6.9), EL [6.9, inf).

Only the bucket's ground truths count; classes without ground truth in a bucket are left out of
its mean. Which predictions take part depends on ``rule``:

``"same_class"`` (default): a prediction whose best-matching ground truth (same video and class,
highest tIoU > 0, ties to the one listed first; the IoU convention of the protocol) lies in
another bucket is ignored, not counted as a false positive: it is evidence about another bucket.
A prediction that overlaps no ground truth of its class stays, as a false positive, in every
bucket.

``"a2net"``: the rule of the A2Net authors' Table I scripts, measured on their files
(``pre_af/pre_*.txt`` are exactly this split of af38): a prediction goes to the bucket of its
best-overlapping ground truth in the same video, of any class; a prediction that overlaps no
ground truth is left out of every bucket. Leaving those false positives out raises every
bucket's mAP.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rc3d_af.errors import InputError
from rc3d_af.evaluation.inputs import DetectionInputs, candidate_pairs, same_key_pairs
from rc3d_af.evaluation.iou import segment_iou_np

__all__ = ["BUCKET_RULES", "DEFAULT_BUCKETS", "Bucket", "BucketRule", "bucket_selections", "parse_buckets"]


@dataclass(frozen=True)
class Bucket:
    """Ground-truth durations in ``[low, high)`` seconds."""

    name: str
    low: float
    high: float


DEFAULT_BUCKETS = (
    Bucket("ES", 0.0, 1.5),
    Bucket("S", 1.5, 2.5),
    Bucket("M", 2.5, 4.2),
    Bucket("L", 4.2, 6.9),
    Bucket("EL", 6.9, math.inf),
)


def parse_buckets(text: str) -> tuple[Bucket, ...]:
    """``"1.5,2.5,4.2,6.9"`` (increasing edges in seconds) -> buckets named by their range."""
    try:
        edges = [float(part) for part in text.split(",")]
    except ValueError:
        raise InputError(f"--buckets: expected seconds such as 1.5,2.5,4.2,6.9, got {text!r}") from None
    bounds = [0.0, *edges, math.inf]
    if any(high <= low for low, high in itertools.pairwise(bounds)):
        raise InputError(f"--buckets: edges must be positive and increasing, got {text!r}")
    return tuple(Bucket(f"[{low:g},{high:g})", low, high) for low, high in itertools.pairwise(bounds))


BucketRule = Literal["same_class", "a2net"]
BUCKET_RULES: tuple[str, ...] = ("same_class", "a2net")


def bucket_selections(
    inputs: DetectionInputs, buckets: Sequence[Bucket], protocol: str, rule: BucketRule = "same_class"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each bucket, ``(gt_mask (G,), pred_mask (P,))`` of what takes part (rules above)."""
    if rule not in BUCKET_RULES:
        raise InputError(f"duration rule: expected one of {BUCKET_RULES}, got {rule!r}")
    length = inputs.gt_segments[:, 1] - inputs.gt_segments[:, 0]
    gt_bucket = np.full(len(length), -1, dtype=np.int64)
    for b, bucket in enumerate(buckets):
        gt_bucket[(length >= bucket.low) & (length < bucket.high)] = b
    if rule == "same_class":
        pred_index, gt_index, iou = candidate_pairs(inputs, protocol)
    else:
        pred_index, gt_index = same_key_pairs(inputs.pred_video, inputs.gt_video)
        iou = segment_iou_np(inputs.pred_segments[pred_index], inputs.gt_segments[gt_index],
                             kind=protocol, aligned=True)
        positive = iou > 0
        pred_index, gt_index, iou = pred_index[positive], gt_index[positive], iou[positive]
    # Best ground truth per prediction: pairs sorted by prediction, then IoU high to low, then GT order.
    order = np.lexsort((gt_index, -iou, pred_index))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pred_index[order][1:] != pred_index[order][:-1]
    best_bucket = np.full(len(inputs.pred_class), -1, dtype=np.int64)
    best_bucket[pred_index[order][first]] = gt_bucket[gt_index[order][first]]
    unmatched_stay = rule == "same_class"
    return [(gt_bucket == b, (best_bucket == b) | (unmatched_stay & (best_bucket < 0)))
            for b in range(len(buckets))]
