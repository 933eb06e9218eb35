"""Proposal evaluation: average recall at AN proposals (AR@AN) and the AUC of the AR-AN curve.

Proposals are class-agnostic: labels are ignored, whatever they hold. Every ground-truth instance
of the evaluated videos counts, duplicates included, and the evaluated videos are those with
ground truth (as the official code does). A ground truth is recalled at a tIoU threshold when one
of the proposals considered has tIoU >= threshold with it. A video's proposals are ranked by
decreasing score under ``tie_rule`` (``ranking.py``: ``"official"``, the official code's
``argsort`` of the scores reversed, or ``"stable"``, ties in file order). Two conventions:

``"activitynet"`` (official ``eval_proposal.py``, ``average_recall_vs_avg_nr_proposals`` with
``max_avg_nr_proposals = M``): V videos with ground truth, N proposals in the whole results file
(videos without ground truth included: they enter the budget through N). Each video keeps its
first ``min(int(n_v * ratio), n_v)`` proposals, ``ratio = M * V / N``; then at each grid point
p = 1..100 it keeps ``min(int(kept_v * p / 100 * M * V / K), kept_v)`` of those (K = sum of
kept_v), and the curve's x value is ``p / 100 * M * V / K * K / V``, the average number of
proposals per video. AR@AN is read on the one curve of M = max(AN), at the grid point p = 100 * AN
/ M (AN must lie on that grid); the AUC is the area under the M = 100 curve (trapezoids) divided
by its last x value, in percent (the leaderboard's AUC).

``"per_video"`` (common on THUMOS14): AR@N uses the top N proposals of every video; the AUC is
the area under AR(N) for N = 1 .. max(AN) divided by max(AN), in percent.

Both tIoU ranges in use are plain ``tiou_thresholds`` strings: ``"0.5:0.95:0.05"`` (ActivityNet,
the default) and ``"0.5:1.0:0.05"`` (THUMOS14 practice, 11 thresholds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from rc3d_af.data.annotations import AnnotationSet
from rc3d_af.errors import InputError
from rc3d_af.evaluation.inputs import same_key_pairs
from rc3d_af.evaluation.iou import segment_iou_np
from rc3d_af.evaluation.ranking import TieRule, check_tie_rule, descending_order
from rc3d_af.evaluation.results import Results
from rc3d_af.evaluation.thresholds import PROPOSAL_TIOU, format_thresholds, parse_thresholds

Convention = Literal["activitynet", "per_video"]
CONVENTIONS: tuple[str, ...] = ("activitynet", "per_video")
DEFAULT_AN = (50, 100, 200, 500, 1000)
ACTIVITYNET_AUC_MAX_AN = 100
GRID_POINTS = 100  # the official AR-AN curve's points

__all__ = ["CONVENTIONS", "DEFAULT_AN", "evaluate_proposals"]


def evaluate_proposals(
    ground_truth: AnnotationSet,
    results: Results,
    subset: str | None = None,
    tiou_thresholds: str | Sequence[float] = PROPOSAL_TIOU,
    an: Sequence[int] = DEFAULT_AN,
    *,
    convention: Convention = "activitynet",
    tie_rule: TieRule = "official",
) -> dict[str, Any]:
    """AR@AN (fractions) and AUC (percent); returns the ``rc3d-af evaluate --proposals --json`` layout.

    Args:
        subset: evaluate only the ground-truth videos of this subset (None: all videos).
        tiou_thresholds: floats or a string such as ``"0.5:0.95:0.05"`` / ``"0.5:1.0:0.05"``.
        an: the AN values (positive; for ``"activitynet"`` on the grid of max(an) / 100).
        convention: which convention fills ``ar`` and ``auc``; ``conventions`` holds both.
        tie_rule: order of tied scores within a video (``ranking.py``).

    Returns:
        ``task``, ``subset``, ``tiou_thresholds`` (list), ``tiou_range`` (text), ``convention``,
        ``tie_rule``, ``an``, ``ar`` (one per AN), ``auc``, ``auc_max_an``, counts (``videos``,
        ``ground_truths``, ``proposals`` on evaluated videos, ``proposals_in_results``: the
        official budget's N), ``unknown_videos``, ``conventions`` (``ar``, ``auc``, ``auc_max_an``
        of each) and ``curves`` (AR-AN curve of each: ``an`` x values, ``ar``).
    """
    if convention not in CONVENTIONS:
        raise InputError(f"convention: expected one of {CONVENTIONS}, got {convention!r}")
    check_tie_rule(tie_rule)
    an = tuple(int(n) for n in an)
    if not an or min(an) <= 0:
        raise InputError(f"--an: expected positive proposal numbers, got {an}")
    grid = _grid_points(an, convention)
    thresholds = parse_thresholds(tiou_thresholds)
    gt = ground_truth.subset(subset) if subset is not None else ground_truth
    table = _ProposalTable(gt, results, tie_rule)
    first_hit = table.first_hit(thresholds)

    curve_x, curve_y = _activitynet_curve(table, first_hit, max(an))
    auc_x, auc_y = _activitynet_curve(table, first_hit, ACTIVITYNET_AUC_MAX_AN)
    numbers = np.arange(1, max(an) + 1)
    per_video_y = _per_video_recall(first_hit, numbers).mean(axis=0)
    conventions = {
        "activitynet": {"ar": [float(curve_y[p - 1]) for p in grid] if grid else None,
                        "auc": _area_percent(auc_x, auc_y), "auc_max_an": ACTIVITYNET_AUC_MAX_AN},
        "per_video": {"ar": [float(per_video_y[n - 1]) for n in an],
                      "auc": _area_percent(numbers.astype(np.float64), per_video_y), "auc_max_an": max(an)},
    }
    return {
        "task": "proposals",
        "subset": subset,
        "tiou_thresholds": list(thresholds),
        "tiou_range": format_thresholds(thresholds),
        "convention": convention,
        "tie_rule": tie_rule,
        "an": list(an),
        "ar": conventions[convention]["ar"],
        "auc": conventions[convention]["auc"],
        "auc_max_an": conventions[convention]["auc_max_an"],
        "videos": len(table.video_ids),
        "ground_truths": len(table.gt_video),
        "proposals": int(table.counts.sum()),
        "proposals_in_results": results.num_predictions,
        "unknown_videos": {"videos": len(table.unknown_videos), "predictions": table.unknown_predictions,
                           "examples": table.unknown_videos[:5]},
        "conventions": conventions,
        "curves": {
            "activitynet": {"an": curve_x.tolist(), "ar": curve_y.tolist()},
            "per_video": {"an": numbers.tolist(), "ar": per_video_y.tolist()},
        },
    }


def _grid_points(an: tuple[int, ...], convention: str) -> list[int] | None:
    """The official curve's grid point p (1..100) of each AN, or None when an AN is off the grid
    (an error for the activitynet convention, where AR@AN is read on that grid)."""
    largest = max(an)
    off = [n for n in an if (n * GRID_POINTS) % largest]
    if not off:
        return [n * GRID_POINTS // largest for n in an]
    if convention == "activitynet":
        raise InputError(f"--an: {off} not on the official AR-AN curve of max AN {largest}, whose "
                         f"{GRID_POINTS} points lie at multiples of {largest}/{GRID_POINTS} proposals")
    return None


class _ProposalTable:
    """Ground truths of the videos that have any (official: these are the evaluated videos) and
    their proposals ranked within each video."""

    def __init__(self, gt: AnnotationSet, results: Results, tie_rule: TieRule) -> None:
        self.video_ids = [vid for vid, video in gt.videos.items() if video.instances]
        index = {vid: i for i, vid in enumerate(self.video_ids)}
        rows = [(index[vid], i.start, i.end) for vid in self.video_ids for i in gt.videos[vid].instances]
        table = np.array(rows, dtype=np.float64).reshape(-1, 3)
        self.gt_video = table[:, 0].astype(np.int64)
        self.gt_segments = table[:, 1:]
        self.counts = np.zeros(len(self.video_ids), dtype=np.int64)
        self.unknown_videos = [vid for vid in results.videos if vid not in index]
        self.unknown_predictions = sum(len(results.videos[vid]) for vid in self.unknown_videos)
        self.total_in_file = results.num_predictions  # the official budget counts every proposal
        videos, segments, ranks = [], [], []
        for vid, detections in results.videos.items():
            if vid not in index:
                continue
            order = descending_order(detections.scores, tie_rule)
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order))
            self.counts[index[vid]] = len(order)
            videos.append(np.full(len(order), index[vid]))
            segments.append(detections.segments)
            ranks.append(rank)
        self.prop_video = np.concatenate(videos) if videos else np.zeros(0, np.int64)
        self.prop_segments = np.concatenate(segments) if segments else np.zeros((0, 2))
        self.prop_rank = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)

    def first_hit(self, thresholds: Sequence[float]) -> np.ndarray:
        """(T, G) int64: rank of the best-ranked proposal with tIoU >= threshold (large if none)."""
        gt_index, prop_index = same_key_pairs(self.gt_video, self.prop_video)
        iou = segment_iou_np(self.gt_segments[gt_index], self.prop_segments[prop_index], aligned=True)
        never = np.iinfo(np.int64).max
        hit = np.full((len(thresholds), len(self.gt_video)), never, dtype=np.int64)
        rank = self.prop_rank[prop_index]
        for t, threshold in enumerate(thresholds):  # T vectorized passes over all pairs
            ok = iou >= threshold
            np.minimum.at(hit[t], gt_index[ok], rank[ok])
        return hit


def _activitynet_curve(
    table: _ProposalTable, first_hit: np.ndarray, max_avg: int
) -> tuple[np.ndarray, np.ndarray]:
    """The official AR-AN curve for ``max_avg_nr_proposals = max_avg``: (x (100,), AR (100,)),
    in the official code's operation order."""
    num_videos = len(table.video_ids)
    if table.total_in_file == 0 or num_videos == 0:
        return np.arange(1, GRID_POINTS + 1) / 100.0 * max_avg, np.zeros(GRID_POINTS)
    ratio = max_avg * float(num_videos) / table.total_in_file
    kept = np.minimum((table.counts * ratio).astype(np.int64), table.counts)  # per video
    total_kept = int(kept.sum())
    if total_kept == 0:
        return np.arange(1, GRID_POINTS + 1) / 100.0 * max_avg, np.zeros(GRID_POINTS)
    fractions = np.arange(1, GRID_POINTS + 1) / 100.0 * (max_avg * float(num_videos) / total_kept)
    budget = np.minimum((kept[:, None] * fractions[None, :]).astype(np.int64), kept[:, None])  # (V, 100)
    matched = first_hit[:, :, None] < budget[table.gt_video][None, :, :]  # (T, G, 100)
    recall = matched.sum(axis=1) / max(len(table.gt_video), 1)
    return fractions * (float(total_kept) / num_videos), recall.mean(axis=0)


def _per_video_recall(first_hit: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """(T, len(numbers)) recall with the top N proposals of every video, for each N."""
    if first_hit.shape[1] == 0:
        return np.zeros((first_hit.shape[0], len(numbers)))
    # Ground truths found within the top N = those whose first hit has rank < N.
    found = np.stack([np.searchsorted(np.sort(row), numbers, side="left") for row in first_hit])
    return found / first_hit.shape[1]


def _area_percent(x: np.ndarray, y: np.ndarray) -> float:
    """100 x the trapezoid area under y(x) divided by the last x (the official normalisation)."""
    if len(x) < 2 or x[-1] <= 0:
        return 0.0
    area = np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0)
    return float(100.0 * float(area) / x[-1])
