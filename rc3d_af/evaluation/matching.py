"""Vectorized greedy matching and the two average-precision definitions.

Both evaluators match greedily: items of one side ("proposers": predictions for ActivityNet,
ground truths for the THUMOS14 kit) are visited in a fixed priority order, and each takes the
still-free item of the other side ("targets") it prefers most (highest IoU, IoU ties by a
per-pair preference) among those acceptable at the threshold. The sequential loop is replaced by rounds that
are vectorized over all proposers, targets and thresholds at once:

    in each round every undecided proposer points at its most-preferred free acceptable target;
    a proposer wins its target when it has the highest priority among all undecided proposers
    that still find that target acceptable.

A winner gets exactly what the sequential loop gives it: no undecided proposer of higher
priority accepts that target, and every target it prefers is already taken by a proposer of
higher priority (a proposer only ever wins a target against every undecided proposer that accepts
it). The highest-priority undecided proposer always wins, so the rounds terminate; their number
is the length of the longest chain of conflicts, a few dozen on real detections.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["greedy_match", "interpolated_average_precision", "kit_average_precision"]


def greedy_match(
    proposer: np.ndarray,
    target: np.ndarray,
    iou: np.ndarray,
    proposer_priority: np.ndarray,
    preference: np.ndarray,
    num_targets: int,
    thresholds: Sequence[float],
    *,
    strict: bool,
) -> np.ndarray:
    """Greedy one-to-one matching at every threshold.

    Args:
        proposer, target: (K,) int64 indices of the candidate pairs (only pairs that may match).
        iou: (K,) float64 IoU of each pair.
        proposer_priority: (P,) int64, distinct; lower goes first.
        preference: (K,) int64; among a proposer's pairs of equal IoU, lower is taken first
            (distinct within a proposer's pairs).
        num_targets: Q, the number of targets.
        thresholds: T tIoU thresholds; a pair is acceptable if ``iou >= thr`` (``iou > thr`` if strict).

    Returns:
        (T, P) int64: the target each proposer took at each threshold, or -1.
    """
    num_proposers = len(proposer_priority)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    accept = iou[None, :] > thresholds[:, None] if strict else iou[None, :] >= thresholds[:, None]
    level, pair = np.nonzero(accept)  # (T, K) flattened to the acceptable (threshold, pair) entries
    prop_key = level * num_proposers + proposer[pair]  # proposer at one threshold
    targ_key = level * num_targets + target[pair]
    priority = proposer_priority[proposer[pair]]
    # Per threshold, proposers by priority, each proposer's pairs by its preference.
    order = np.lexsort((preference[pair], -iou[pair], priority, level))
    prop_key, targ_key, priority = prop_key[order], targ_key[order], priority[order]

    matched = np.full(len(thresholds) * num_proposers, -1, dtype=np.int64)
    taken = np.zeros(len(thresholds) * num_targets, dtype=bool)
    best = np.empty(len(thresholds) * num_targets, dtype=np.int64)
    while prop_key.size:
        first = np.ones(prop_key.size, dtype=bool)  # each proposer's most preferred free target
        first[1:] = prop_key[1:] != prop_key[:-1]
        best[targ_key] = np.iinfo(np.int64).max
        np.minimum.at(best, targ_key, priority)  # highest-priority proposer accepting each target
        win = first & (best[targ_key] == priority)
        matched[prop_key[win]] = targ_key[win] % num_targets
        taken[targ_key[win]] = True
        alive = (matched[prop_key] < 0) & ~taken[targ_key]
        prop_key, targ_key, priority = prop_key[alive], targ_key[alive], priority[alive]
    return matched.reshape(len(thresholds), num_proposers)


def _class_columns(pred_class: np.ndarray, pred_rank: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """For each class, its predictions' indices in ranking order (best first)."""
    order = np.lexsort((pred_rank, pred_class))
    bounds = np.searchsorted(pred_class[order], np.arange(num_classes + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(num_classes)]


def interpolated_average_precision(
    tp: np.ndarray, pred_class: np.ndarray, pred_rank: np.ndarray, num_positives: np.ndarray
) -> np.ndarray:
    """ActivityNet AP: area under the precision envelope, summed over recall steps.

    Args:
        tp: (T, P) bool, prediction p is a true positive at threshold t (all others are FP).
        pred_class: (P,) class ids (predictions of other classes must be removed beforehand).
        pred_rank: (P,) ranking position, 0 = highest score.
        num_positives: (C,) ground truths per class.

    Returns:
        (T, C) float64; NaN for classes without ground truth.
    """
    num_classes = len(num_positives)
    ap = np.full((tp.shape[0], num_classes), np.nan)
    for c, columns in enumerate(_class_columns(pred_class, pred_rank, num_classes)):
        if num_positives[c] == 0:
            continue
        hits = tp[:, columns]
        tp_cum = np.cumsum(hits, axis=1).astype(np.float64)
        fp_cum = np.cumsum(~hits, axis=1).astype(np.float64)
        recall = tp_cum / num_positives[c]
        precision = tp_cum / (tp_cum + fp_cum)
        zeros, ones = np.zeros((tp.shape[0], 1)), np.ones((tp.shape[0], 1))
        mprec = np.hstack([zeros, precision, zeros])
        mrec = np.hstack([zeros, recall, ones])
        envelope = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]
        step = mrec[:, 1:] - mrec[:, :-1]
        ap[:, c] = np.sum(np.where(step != 0, step * envelope[:, 1:], 0.0), axis=1)
    return ap


def kit_average_precision(
    tp: np.ndarray,
    counted: np.ndarray,
    pred_class: np.ndarray,
    pred_rank: np.ndarray,
    num_positives: np.ndarray,
) -> np.ndarray:
    """THUMOS14 kit AP: sum of the precision at each true positive / ground truths (no envelope).

    ``counted`` (T, P) marks the predictions that enter the ranking (the kit drops unmatched
    predictions overlapping Ambiguous intervals). Other arguments as in
    :func:`interpolated_average_precision`; returns (T, C), NaN for classes without ground truth.
    """
    num_classes = len(num_positives)
    ap = np.full((tp.shape[0], num_classes), np.nan)
    for c, columns in enumerate(_class_columns(pred_class, pred_rank, num_classes)):
        if num_positives[c] == 0:
            continue
        hits, kept = tp[:, columns], counted[:, columns]
        precision = np.cumsum(hits, axis=1) / np.maximum(np.cumsum(kept, axis=1), 1)
        ap[:, c] = np.sum(np.where(hits, precision, 0.0), axis=1) / num_positives[c]
    return ap
