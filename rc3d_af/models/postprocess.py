"""Inference (paper section III-F): head outputs -> window detections -> video detections in seconds.

Per window (:func:`window_detections`): anchor-free boxes by inverting equation (3), confidence
``max_c S^af_c`` over the foreground classes; anchor-based boxes by equation (1), confidence
``p_o x max_c S^ab_c`` (equation (11)); for the joint model the anchor-based confidences are weighted
by ``lambda`` and the anchor-free ones by ``1 - lambda`` (Table V). Boxes are clipped to the window,
candidates under ``score_threshold`` dropped and the best ``pre_nms_top_k`` kept.

Per video (:func:`video_detections`): all windows merged in video feature indices, converted to
seconds with the one mapping ``FeatureSpec.index_to_seconds`` and the video's own fps, then per-class
NMS (``rc3d_af.ops.batched_nms_1d``, or soft-NMS per class), ``nms_per_class`` per class and
``top_k`` per video.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from rc3d_af.data.features import FeatureSpec
from rc3d_af.errors import InputError
from rc3d_af.models import anchor_based, anchor_free
from rc3d_af.models.config import ModelConfig
from rc3d_af.models.layers.proposals import rank_within_group
from rc3d_af.ops import batched_nms_1d, soft_nms_1d

# Per-branch candidates of a batch: segments [B, N, 2], scores [B, N], labels [B, N], keep mask [B, N].
Candidates = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass
class WindowDetections:
    """Candidate detections of one window, before NMS."""

    segments: torch.Tensor  # [N, 2] float32 (start, end), window positions
    scores: torch.Tensor  # [N] float32
    labels: torch.Tensor  # [N] int64 class ids 0..C-1

    def __len__(self) -> int:
        return int(self.scores.numel())


def window_detections(outputs: dict[str, torch.Tensor], cfg: ModelConfig) -> list[WindowDetections]:
    """Decode ``A2Net.forward`` outputs into one :class:`WindowDetections` per window (detached)."""
    branches = []
    if "af_cls" in outputs:
        weight = 1.0 - cfg.branch_weight if "ab_cls" in outputs else 1.0
        branches.append(_anchor_free_candidates(outputs, cfg, weight))
    if "ab_cls" in outputs:
        weight = cfg.branch_weight if "af_cls" in outputs else 1.0
        branches.append(_anchor_based_candidates(outputs, cfg, weight))
    if not branches:
        raise ValueError("outputs: expected anchor-free and/or anchor-based head outputs")
    segments, scores, labels, keep = (torch.cat(parts, dim=1) for parts in zip(*branches, strict=True))
    window_size = float(outputs["window_size"])
    segments = segments.clamp(0.0, window_size)
    keep &= (scores >= cfg.score_threshold) & (segments[..., 1] > segments[..., 0])
    detections = []
    for b in range(scores.size(0)):
        idx = keep[b].nonzero().squeeze(1)
        if idx.numel() > cfg.pre_nms_top_k:
            idx = idx[scores[b, idx].topk(cfg.pre_nms_top_k).indices]
        detections.append(WindowDetections(segments[b, idx], scores[b, idx], labels[b, idx]))
    return detections


@torch.no_grad()
def _anchor_free_candidates(outputs: dict[str, torch.Tensor], cfg: ModelConfig, weight: float) -> Candidates:
    """Inverse of equation (3); confidence = the best foreground class probability, x ``weight``."""
    points = outputs["points"]
    probs = torch.softmax(outputs["af_cls"].float(), dim=-1)
    scores, labels = probs[..., 1:].max(dim=-1)  # [B, Np]
    distances = outputs["af_reg"].float().clamp(min=0.0)  # a negative distance means "at the point"
    batch = scores.size(0)
    units = anchor_free.regression_units(points, cfg).repeat(batch)
    segments = anchor_free.decode(points[:, 0].repeat(batch), distances.flatten(0, 1), units)
    keep = torch.ones_like(scores, dtype=torch.bool)
    return segments.view(batch, -1, 2), scores * weight, labels, keep


@torch.no_grad()
def _anchor_based_candidates(outputs: dict[str, torch.Tensor], cfg: ModelConfig, weight: float) -> Candidates:
    """Equation (1); confidence = p_o x the best foreground class probability (11), x ``weight``."""
    anchors = outputs["anchors"]
    probs = torch.softmax(outputs["ab_cls"].float(), dim=-1)
    class_scores, labels = probs[..., 1:].max(dim=-1)  # [B, Na]
    scores = torch.sigmoid(outputs["ab_overlap"].float()) * class_scores  # equation (11)
    batch = scores.size(0)
    segments = anchor_based.decode(
        outputs["ab_reg"].float().flatten(0, 1), anchors.repeat(batch, 1), cfg.ab_alpha, cfg.ab_beta
    )
    if cfg.ab_max_background < 1.0:
        keep = probs[..., 0] < cfg.ab_max_background
    else:
        keep = torch.ones_like(scores, dtype=torch.bool)
    return segments.view(batch, -1, 2), scores * weight, labels, keep


def fuse_detections(
    first: Sequence[WindowDetections],
    second: Sequence[WindowDetections],
    weights: tuple[float, float] = (0.5, 0.5),
) -> list[WindowDetections]:
    """Late fusion of two separately trained models (Table III "fuse"): window by window, the union of
    both candidate sets with scores multiplied by ``weights``; NMS then runs on the union per video."""
    if len(first) != len(second):
        raise InputError(
            f"fuse: the two models gave {len(first)} and {len(second)} windows; expected the same"
        )
    return [
        WindowDetections(
            torch.cat([a.segments, b.segments]),
            torch.cat([a.scores * weights[0], b.scores * weights[1]]),
            torch.cat([a.labels, b.labels]),
        )
        for a, b in zip(first, second, strict=True)
    ]


class VideoMergeSettings(Protocol):
    """The NMS settings of the video merge; every detector config has these fields."""

    nms_iou: float
    class_agnostic_nms: bool
    soft_nms: bool
    soft_nms_sigma: float
    soft_nms_method: str
    soft_nms_min_score: float
    nms_per_class: int
    top_k: int


def video_detections(
    windows: Sequence[tuple[WindowDetections, int, float]],
    fps: float,
    feature_spec: FeatureSpec,
    cfg: VideoMergeSettings,
    duration: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge the windows of one video into its final detections (the one video merge of every detector).

    Args:
        windows: ``(detections, start_index, scale)`` per window; a window position ``x`` is video
            feature index ``start_index + x * scale``.
        fps: the video's own frame rate.
        feature_spec: feature sampling, for ``index_to_seconds``.
        cfg: NMS settings (``nms_iou``, ``soft_nms*``, ``class_agnostic_nms``, ``nms_per_class``, ``top_k``):
            the detector's model config.
        duration: when given, segments are clipped to ``[0, duration]`` seconds.

    Returns:
        ``segments [N, 2]`` float64 seconds, ``scores [N]`` float64, ``labels [N]`` int64, sorted by
        decreasing score, on the device of the windows' detections (the CPU when there are none).
    """
    segments, scores, labels = _merge_windows(windows, fps, feature_spec)
    if duration is not None:
        segments = segments.clamp(0.0, float(duration))
        valid = segments[:, 1] > segments[:, 0]
        segments, scores, labels = segments[valid], scores[valid], labels[valid]
    nms_labels = torch.zeros_like(labels) if cfg.class_agnostic_nms else labels
    if cfg.soft_nms:
        keep, scores = _soft_nms_per_class(segments, scores, nms_labels, cfg)
    else:
        keep = batched_nms_1d(segments, scores, nms_labels, cfg.nms_iou, check_values=False)
        scores = scores[keep]
    segments, labels, nms_labels = segments[keep], labels[keep], nms_labels[keep]
    order = scores.argsort(descending=True, stable=True)
    within = rank_within_group(nms_labels[order]) < cfg.nms_per_class
    keep = order[within][: cfg.top_k]
    return segments[keep], scores[keep], labels[keep]


def _merge_windows(
    windows: Sequence[tuple[WindowDetections, int, float]], fps: float, feature_spec: FeatureSpec
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All windows' candidates as float64 seconds, float64 scores and int64 labels, on the device of
    the detections."""
    device = windows[0][0].scores.device if windows else torch.device("cpu")
    segments, scores, labels = [torch.zeros(0, 2, dtype=torch.float64, device=device)], [], []
    for detections, start_index, scale in windows:
        indices = start_index + detections.segments.detach().double() * float(scale)
        segments.append(feature_spec.index_to_seconds(indices, fps))
        scores.append(detections.scores.detach().double())
        labels.append(detections.labels.detach().long())
    return (
        torch.cat(segments),
        torch.cat([torch.zeros(0, dtype=torch.float64, device=device), *scores]),
        torch.cat([torch.zeros(0, dtype=torch.int64, device=device), *labels]),
    )


def _soft_nms_per_class(
    segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, cfg: VideoMergeSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS run separately on each label; returns kept indices and their decayed scores."""
    kept = [torch.zeros(0, dtype=torch.int64, device=scores.device)]
    kept_scores = [torch.zeros(0, dtype=scores.dtype, device=scores.device)]
    for label in labels.unique():
        idx = (labels == label).nonzero().squeeze(1)
        keep, new_scores = soft_nms_1d(
            segments[idx],
            scores[idx],
            cfg.nms_iou,
            cfg.soft_nms_sigma,
            cfg.soft_nms_min_score,
            cfg.soft_nms_method,
        )
        kept.append(idx[keep])
        kept_scores.append(new_scores)
    return torch.cat(kept), torch.cat(kept_scores)
