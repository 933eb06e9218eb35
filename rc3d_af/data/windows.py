"""Cutting videos into fixed-length model inputs ("windows"), with ground truth in window positions.

Two styles, both in feature-index units (see :class:`rc3d_af.data.features.FeatureSpec`):

* THUMOS14 (:func:`sliding_windows`): windows of ``window_size`` consecutive features every
  ``stride`` features, plus one window aligned to the video's end; a video shorter than a window
  gives one window, padded at the end by repeating its last feature. The A2Net reference uses
  128-feature windows (512 frames), a training stride of 32 features (128 frames) and a test
  stride of 64 features (256 frames).
* ActivityNet (:func:`rescaled_windows`): the whole video resampled to ``window_size`` positions by
  linear interpolation.

Window position ``p`` (continuous) is video feature index ``start_index + p * scale``
(:meth:`Window.to_video_index`); ``scale`` is 1 for sliding windows. Ground-truth segments are
converted from seconds with the video's own fps (after clipping to the video's duration; an
instance wholly outside the video is left out), clipped to ``[0, window_size]``, and a segment
belongs to a window only if more than ``min_gt_coverage`` of its length lies inside the window
(the reference's rule, 0.9). Training windows without such a segment are dropped; training ground
truths that end up in no window are counted and reported in a logged warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rc3d_af.data.annotations import AnnotationSet, VideoAnnotation
from rc3d_af.data.features import FeatureSpec
from rc3d_af.errors import InputError

__all__ = ["TEST_STRIDE", "TRAIN_STRIDE", "Window", "rescaled_windows", "sliding_windows"]

logger = logging.getLogger(__name__)

TRAIN_STRIDE = 32  # features (128 frames at stride 4), the A2Net reference's training stride
TEST_STRIDE = 64  # features (256 frames), its test stride


@dataclass
class Window:
    """One model input cut from a video.

    Attributes:
        video_id: the video.
        start_index: video feature index of window position 0.
        length: valid positions (``<= window_size``); the rest is padding.
        scale: video features per window position (1.0 for sliding windows, ``T / window_size``
            for rescaled ones).
        gt_segments: ``(M, 2)`` float32 ground truth in window positions, clipped to ``[0, window_size]``.
        gt_labels: ``(M,)`` int64 class ids ``0..C-1``.
    """

    video_id: str
    start_index: int
    length: int
    scale: float
    gt_segments: np.ndarray
    gt_labels: np.ndarray

    def to_video_index(self, positions: np.ndarray | float) -> np.ndarray | float:
        """Window positions -> continuous video feature indices (then seconds via ``FeatureSpec``)."""
        return self.start_index + positions * self.scale


def _video_gt(
    video: VideoAnnotation, annotations: AnnotationSet, spec: FeatureSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of one video as ``(M, 2)`` float64 video feature indices and ``(M,)`` int64 labels."""
    if not video.instances:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    if video.fps is None:
        raise InputError(
            f"video '{video.video_id}' has no fps in the annotations: the feature index of its ground "
            "truth cannot be computed (add 'fps' to the annotation file or pass the video info table)"
        )
    seconds = np.array([(inst.start, inst.end) for inst in video.instances], dtype=np.float64)
    labels = np.array([annotations.class_index(inst.label) for inst in video.instances], dtype=np.int64)
    # Ground truth is clipped to the video; an instance wholly outside it holds none of its frames
    # (rc3d_af.data.checks stops on those unless data.segments_beyond is "keep").
    inside = (seconds[:, 0] <= video.duration) & (seconds[:, 1] >= 0)
    seconds = np.clip(seconds[inside], 0.0, video.duration)
    return spec.seconds_to_index(seconds, video.fps), labels[inside]


def _assign_gt(
    gt: np.ndarray, labels: np.ndarray, start: float, scale: float, window_size: int, min_gt_coverage: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth of one window: clipped segments in positions, labels, and which gt were taken.

    A segment is taken when more than ``min_gt_coverage`` of its length lies inside the window;
    a zero-length segment when it lies inside.
    """
    positions = (gt - start) / scale
    clipped = np.clip(positions, 0.0, float(window_size))
    length = positions[:, 1] - positions[:, 0]
    inside = clipped[:, 1] - clipped[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        coverage = np.where(length > 0, inside / np.where(length > 0, length, 1.0), 0.0)
    point_inside = (length <= 0) & (positions[:, 0] >= 0) & (positions[:, 0] <= window_size)
    taken = (coverage > min_gt_coverage) | point_inside
    return clipped[taken].astype(np.float32), labels[taken], taken


def _window_starts(num_features: int, window_size: int, stride: int) -> list[int]:
    """Regular starts every ``stride`` plus one aligned to the end when the video outgrows a window."""
    if num_features <= window_size:
        return [0]
    starts = list(range(0, num_features - window_size + 1, stride))
    if starts[-1] + window_size < num_features:
        starts.append(num_features - window_size)
    return starts


def _select_videos(
    annotations: AnnotationSet, subset: str | None, num_features: Mapping[str, int]
) -> list[VideoAnnotation]:
    videos = list(annotations.videos.values())
    if subset is not None:
        videos = [v for v in videos if v.subset == subset]
        if not videos:
            found = sorted({v.subset for v in annotations.videos.values()})
            raise InputError(f"no video in subset '{subset}' (the annotations have subsets {found})")
    missing = [v.video_id for v in videos if v.video_id not in num_features]
    if missing:
        raise InputError(
            f"{len(missing)} video(s) of subset '{subset}' have no features, e.g. {missing[:5]} "
            "(num_features must give T for every video of the subset)"
        )
    bad = [v.video_id for v in videos if num_features[v.video_id] < 1]
    if bad:
        raise InputError(f"num_features must be >= 1, got {num_features[bad[0]]} for video '{bad[0]}'")
    return videos


def _check_sizes(window_size: int, min_gt_coverage: float, stride: int | None = None) -> None:
    if window_size < 1:
        raise InputError(f"window_size must be at least 1, got {window_size}")
    if stride is not None and stride < 1:
        raise InputError(f"stride must be at least 1, got {stride}")
    if not 0.0 <= min_gt_coverage < 1.0:
        raise InputError(f"min_gt_coverage must be in [0, 1), got {min_gt_coverage}")


def _report_uncovered(uncovered: int, total: int, style: str) -> None:
    if uncovered:
        logger.warning(
            "%d of %d ground-truth instances lie in no %s window with more than the required share of "
            "their length (mostly instances longer than a window); they cannot be learned",
            uncovered,
            total,
            style,
        )


def sliding_windows(
    annotations: AnnotationSet,
    subset: str | None,
    num_features: Mapping[str, int],
    spec: FeatureSpec,
    window_size: int = 128,
    stride: int | None = None,
    training: bool = True,
    min_gt_coverage: float = 0.9,
) -> list[Window]:
    """THUMOS14-style sliding windows over every video of ``subset`` (all videos when None).

    Args:
        annotations: videos, ground truth (seconds) and class names.
        subset: e.g. ``"validation"`` (THUMOS14 training split) or ``"test"``.
        num_features: ``{video_id: T}`` (see ``FeatureStore.lengths``).
        spec: the feature sampling, for seconds -> feature indices (with each video's fps).
        window_size: positions per window (features).
        stride: features between window starts; default :data:`TRAIN_STRIDE` (32) when training,
            :data:`TEST_STRIDE` (64) otherwise.
        training: drop windows that hold no ground truth.
        min_gt_coverage: a ground truth belongs to a window when more than this share of its
            length is inside it.

    Returns:
        Windows in video order, then by start.
    """
    stride = (TRAIN_STRIDE if training else TEST_STRIDE) if stride is None else stride
    _check_sizes(window_size, min_gt_coverage, stride)
    windows: list[Window] = []
    total = uncovered = 0
    for video in _select_videos(annotations, subset, num_features):
        gt, labels = _video_gt(video, annotations, spec)
        length = num_features[video.video_id]
        covered = np.zeros(len(gt), dtype=bool)
        for start in _window_starts(length, window_size, stride):
            segments, window_labels, taken = _assign_gt(gt, labels, start, 1.0, window_size, min_gt_coverage)
            covered |= taken
            if training and len(segments) == 0:
                continue
            valid = min(window_size, length - start)
            windows.append(Window(video.video_id, start, valid, 1.0, segments, window_labels))
        total += len(gt)
        uncovered += int((~covered).sum())
    if training:  # test windows' ground truth is informative only: evaluation works in seconds
        _report_uncovered(uncovered, total, "sliding")
    return windows


def rescaled_windows(
    annotations: AnnotationSet,
    subset: str | None,
    num_features: Mapping[str, int],
    spec: FeatureSpec,
    window_size: int = 128,
    min_gt_coverage: float = 0.9,
) -> list[Window]:
    """ActivityNet-style: one window per video, the whole video resampled to ``window_size`` positions.

    Position ``p`` samples the video at feature index ``p * T / window_size`` (linear
    interpolation between neighbouring features, the last feature repeated past ``T - 1``; see
    ``WindowDataset``). Every video is kept, with or without ground truth.
    """
    _check_sizes(window_size, min_gt_coverage)
    windows: list[Window] = []
    total = uncovered = 0
    for video in _select_videos(annotations, subset, num_features):
        gt, labels = _video_gt(video, annotations, spec)
        scale = num_features[video.video_id] / window_size
        segments, window_labels, taken = _assign_gt(gt, labels, 0.0, scale, window_size, min_gt_coverage)
        windows.append(Window(video.video_id, 0, window_size, scale, segments, window_labels))
        total += len(gt)
        uncovered += int((~taken).sum())
    _report_uncovered(uncovered, total, "rescaled")
    return windows
