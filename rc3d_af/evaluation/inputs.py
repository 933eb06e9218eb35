"""Ground truth and results flattened to arrays, the form every evaluator works on.

Predictions whose label is not a class name are set aside (counted, reported, never matched, so
they cannot shift any class's AP). Predictions on videos that are not in the evaluated ground
truth are kept by default with no ground truth to match, i.e. as false positives, as the official
ActivityNet evaluator and the THUMOS14 kit do; ``unknown_videos="ignore"`` removes them instead.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from rc3d_af.data.annotations import AnnotationSet
from rc3d_af.errors import InputError
from rc3d_af.evaluation.iou import IoUKind, segment_iou_np
from rc3d_af.evaluation.results import Results

UnknownVideos = Literal["false_positive", "ignore"]

__all__ = ["DetectionInputs", "UnknownVideos", "build_inputs", "candidate_pairs", "same_key_pairs"]


@dataclass
class DetectionInputs:
    """Flat arrays (seconds). GT in annotation order, predictions in input order.

    ``video_ids`` lists the ground-truth videos first (``num_gt_videos`` of them), then the
    videos that only the results name. Prediction ``order`` is the position in the input
    (videos in order of first appearance, detections in file order): the tie-break.
    """

    class_names: list[str]
    video_ids: list[str]
    num_gt_videos: int
    gt_video: np.ndarray  # (G,) int64
    gt_class: np.ndarray  # (G,) int64
    gt_segments: np.ndarray  # (G, 2) float64
    pred_video: np.ndarray  # (P,) int64
    pred_class: np.ndarray  # (P,) int64
    pred_segments: np.ndarray  # (P, 2) float64
    pred_scores: np.ndarray  # (P,) float64
    pred_order: np.ndarray  # (P,) int64
    ambiguous_video: np.ndarray  # (A,) int64
    ambiguous_segments: np.ndarray  # (A, 2) float64
    unknown_labels: dict[str, int] = field(default_factory=dict)
    unknown_video_ids: list[str] = field(default_factory=list)
    unknown_video_predictions: int = 0

    def select(self, gt_mask: np.ndarray, pred_mask: np.ndarray) -> DetectionInputs:
        """The same problem restricted to some ground truths and predictions (order kept)."""
        return replace(
            self,
            gt_video=self.gt_video[gt_mask], gt_class=self.gt_class[gt_mask],
            gt_segments=self.gt_segments[gt_mask],
            pred_video=self.pred_video[pred_mask], pred_class=self.pred_class[pred_mask],
            pred_segments=self.pred_segments[pred_mask], pred_scores=self.pred_scores[pred_mask],
            pred_order=self.pred_order[pred_mask],
        )

    @property
    def num_positives(self) -> np.ndarray:
        """(C,) ground truths per class."""
        return np.bincount(self.gt_class, minlength=len(self.class_names))


def build_inputs(
    ground_truth: AnnotationSet,
    results: Results,
    *,
    unknown_videos: UnknownVideos = "false_positive",
    clip_to_duration: bool = False,
) -> DetectionInputs:
    """Flatten ``ground_truth`` (already restricted to the evaluated subset) and ``results``.

    ``clip_to_duration`` clips predictions on ground-truth videos to ``[0, duration]`` (the
    official evaluators do not clip; it is offered as an explicit alternative).
    """
    if unknown_videos not in ("false_positive", "ignore"):
        raise InputError(f"unknown_videos: expected 'false_positive' or 'ignore', got {unknown_videos!r}")
    class_of = {name: i for i, name in enumerate(ground_truth.class_names)}
    stray = {i.label for v in ground_truth.videos.values() for i in v.instances} - set(class_of)
    if stray:
        raise InputError(f"ground truth: labels {sorted(stray)[:5]} are not in its class_names")
    video_ids = list(ground_truth.videos)
    video_of = {vid: i for i, vid in enumerate(video_ids)}
    gt_rows = [
        (video_of[vid], class_of[inst.label], inst.start, inst.end)
        for vid, video in ground_truth.videos.items()
        for inst in video.instances
    ]
    gt = np.array(gt_rows, dtype=np.float64).reshape(-1, 4)
    amb_rows = [
        (video_of[vid], start, end)
        for vid, video in ground_truth.videos.items()
        for start, end in video.ambiguous
    ]
    amb = np.array(amb_rows, dtype=np.float64).reshape(-1, 3)

    unknown_labels: Counter[str] = Counter()
    unknown_vids: list[str] = []
    unknown_preds = 0
    parts = []
    for vid, video in results.videos.items():
        known_video = vid in video_of
        if not known_video:
            unknown_vids.append(vid)
            unknown_preds += len(video)
            if unknown_videos == "ignore":
                continue
            video_of[vid] = len(video_ids)
            video_ids.append(vid)
        classes = np.array([class_of.get(label, -1) for label in video.labels], dtype=np.int64)
        unknown_labels.update(label for label, c in zip(video.labels, classes, strict=True) if c < 0)
        segments = video.segments
        if clip_to_duration and known_video:
            segments = segments.clip(0.0, ground_truth.videos[vid].duration)
        parts.append((np.full(len(video), video_of[vid]), classes, segments, video.scores))
    pred_video, pred_class, pred_segments, pred_scores = _concat(parts)
    keep = pred_class >= 0
    return DetectionInputs(
        class_names=list(ground_truth.class_names),
        video_ids=video_ids,
        num_gt_videos=len(ground_truth.videos),
        gt_video=gt[:, 0].astype(np.int64), gt_class=gt[:, 1].astype(np.int64), gt_segments=gt[:, 2:],
        pred_video=pred_video[keep], pred_class=pred_class[keep], pred_segments=pred_segments[keep],
        pred_scores=pred_scores[keep], pred_order=np.flatnonzero(keep),
        ambiguous_video=amb[:, 0].astype(np.int64), ambiguous_segments=amb[:, 1:],
        unknown_labels=dict(unknown_labels), unknown_video_ids=unknown_vids,
        unknown_video_predictions=unknown_preds,
    )


def _concat(parts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if not parts:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0))
    videos, classes, segments, scores = zip(*parts, strict=True)
    return (np.concatenate(videos).astype(np.int64), np.concatenate(classes),
            np.concatenate(segments).astype(np.float64), np.concatenate(scores).astype(np.float64))


def same_key_pairs(left_key: np.ndarray, right_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs ``(i, j)`` with ``left_key[i] == right_key[j]``, grouped by ``i``.

    Without a Python loop: ``right`` sorted by key, each left item paired with its key's range
    (``j`` ascending within a group).
    """
    right_sorted = np.argsort(right_key, kind="stable")
    sorted_keys = right_key[right_sorted]
    start = np.searchsorted(sorted_keys, left_key, side="left")
    count = np.searchsorted(sorted_keys, left_key, side="right") - start
    left_index = np.repeat(np.arange(len(left_key)), count)
    ramp = np.arange(len(left_index)) - np.repeat(np.cumsum(count) - count, count)
    return left_index, right_sorted[np.repeat(start, count) + ramp]


def candidate_pairs(inputs: DetectionInputs, kind: IoUKind) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (prediction, ground truth) pairs of the same video and class with IoU > 0.

    Returns ``(pred_index, gt_index, iou)``, each (K,) (IoU float64, convention ``kind``).
    """
    num_classes = len(inputs.class_names)
    pred_index, gt_index = same_key_pairs(
        inputs.pred_video * num_classes + inputs.pred_class, inputs.gt_video * num_classes + inputs.gt_class
    )
    iou = segment_iou_np(
        inputs.pred_segments[pred_index], inputs.gt_segments[gt_index], kind=kind, aligned=True
    )
    positive = iou > 0
    return pred_index[positive], gt_index[positive], iou[positive]
