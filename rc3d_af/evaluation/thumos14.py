"""The THUMOS14 evaluation kit's protocol (``TH14evalDet.m``, kit of 2015-09-30).

The rules, as measured on the kit under GNU Octave (docs: REFERENCE_CODE_FACTS.md):

1. Matching goes from ground truth to detections, per class and video. Ground truths are visited
   in annotation-file order; each takes the still-unmatched detection of highest IoU (IoU ties:
   the one ranked higher); the match counts only if IoU > threshold (strictly).
2. IoU = intersection / (largest end - smallest start), 0 unless the intersection is > 0
   (``segment_iou_np(kind="thumos14")``); segments are not clipped to the video.
3. An unmatched detection that overlaps any Ambiguous interval of its video (by any amount,
   whatever its class or the threshold) is dropped: neither a true nor a false positive.
4. AP = sum of the precision at each true positive / number of ground truths of the class; no
   interpolation. A class without detections has AP 0 and counts in the mean.
5. Ranking: by score, high to low; ties by video name (sorted), then file order.
6. ``.mp4`` is stripped from names (the loaders do it); class ids map through detclasslist.txt;
   CliffDiving detections are scored against CliffDiving ground truth only; detections on videos
   without ground truth are false positives unless they overlap Ambiguous.
7. Thresholds are exact decimals (``thresholds.parse_thresholds``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rc3d_af.evaluation.inputs import DetectionInputs, candidate_pairs, same_key_pairs
from rc3d_af.evaluation.iou import segment_iou_np
from rc3d_af.evaluation.matching import greedy_match, kit_average_precision

__all__ = ["kit_rank", "thumos14_protocol"]


def kit_rank(inputs: DetectionInputs) -> np.ndarray:
    """(P,) ranking position: score high to low, then video name, then input order (rule 5)."""
    name_rank = np.argsort(np.argsort(np.array(inputs.video_ids, dtype=object), kind="stable"))
    order = np.lexsort((inputs.pred_order, name_rank[inputs.pred_video], -inputs.pred_scores))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def thumos14_protocol(inputs: DetectionInputs, thresholds: Sequence[float]) -> dict[str, np.ndarray]:
    """Per-class AP under the kit's rules.

    Returns dict with ``ap`` (T, C) (NaN for classes without ground truth), ``tp`` (T, P) bool,
    ``counted`` (T, P) bool (False = dropped for overlapping Ambiguous) and ``rank`` (P,).
    """
    rank = kit_rank(inputs)
    pred_index, gt_index, iou = candidate_pairs(inputs, "thumos14")
    taken = greedy_match(gt_index, pred_index, iou, np.arange(len(inputs.gt_class)), rank[pred_index],
                         len(rank), thresholds, strict=True)  # (T, G): the detection each ground truth took
    tp = np.zeros((len(thresholds), len(rank)), dtype=bool)
    level, gt = np.nonzero(taken >= 0)
    tp[level, taken[level, gt]] = True
    counted = tp | ~_overlaps_ambiguous(inputs)[None, :]
    ap = kit_average_precision(tp, counted, inputs.pred_class, rank, inputs.num_positives)
    return {"ap": ap, "tp": tp, "counted": counted, "rank": rank}


def _overlaps_ambiguous(inputs: DetectionInputs) -> np.ndarray:
    """(P,) bool: the prediction overlaps an Ambiguous interval of its video by any amount."""
    pred_index, amb_index = same_key_pairs(inputs.pred_video, inputs.ambiguous_video)
    iou = segment_iou_np(inputs.pred_segments[pred_index], inputs.ambiguous_segments[amb_index],
                         kind="thumos14", aligned=True)
    overlaps = np.zeros(len(inputs.pred_video), dtype=bool)
    overlaps[pred_index[iou > 0]] = True
    return overlaps
