"""Training targets: which anchors and points each ground truth supervises, and with what.

Anchor-based (section III-C): an anchor is positive when its default segment has IoU > 0.5 with a
ground truth (the highest-IoU ground truth wins); overlap target = that IoU; regression target =
equation (1) inverted; negatives (all other anchors) are sampled ``ab_negative_ratio`` per positive,
at random with torch's global CPU generator (a seeded run is deterministic on every device) or, with
``ab_negative_mining="hard"``, those with the highest predicted foreground probability.

Anchor-free (section III-D): a ground truth of length ``l`` belongs to the level whose range
``[low, high)`` holds ``l``; a point of that level is foreground when ``t_s <= j' <= t_e``. When
several ground truths of its level hold a point, the shortest wins.

Ground truths are in window positions; class ids are 0..C-1 and become targets 1..C (0 = background).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rc3d_af.errors import InputError
from rc3d_af.models import anchor_based, anchor_free
from rc3d_af.models.config import ModelConfig
from rc3d_af.ops import segment_iou

IGNORE = -1  # anchor label of an anchor left out of the classification loss


@dataclass
class AnchorTargets:
    """Targets of one window's ``Na`` anchors."""

    labels: torch.Tensor  # [Na] int64: 1..C positive, 0 sampled negative, IGNORE otherwise
    overlaps: torch.Tensor  # [Na] float: IoU with the matched ground truth (positives)
    deltas: torch.Tensor  # [Na, 2] float: (delta_c, delta_w) targets (positives; 0 elsewhere)
    num_unmatched: int  # ground truths that no anchor matched


@dataclass
class PointTargets:
    """Targets of one window's ``Np`` points."""

    labels: torch.Tensor  # [Np] int64: 1..C foreground, 0 background
    distances: torch.Tensor  # [Np, 2] float: (start, end) distances in regression units (foreground)
    num_unassigned: int  # ground truths that took no point


def check_ground_truth(
    gt_segments: torch.Tensor, gt_labels: torch.Tensor, num_classes: int, index: int
) -> None:
    """Validate window ``index``'s ground truth: ``[M, 2]`` (start <= end) and ``[M]`` ids in 0..C-1."""
    if gt_segments.dim() != 2 or gt_segments.size(1) != 2:
        raise InputError(f"gt_segments[{index}]: expected shape [M, 2], got {list(gt_segments.shape)}")
    if gt_labels.shape != (gt_segments.size(0),):
        raise InputError(
            f"gt_labels[{index}]: expected shape [{gt_segments.size(0)}] (one per segment), "
            f"got {list(gt_labels.shape)}"
        )
    if gt_segments.numel() and not bool((gt_segments[:, 1] >= gt_segments[:, 0]).all()):
        raise InputError(f"gt_segments[{index}]: every row must be (start, end) with end >= start")
    if gt_labels.numel() and not (int(gt_labels.min()) >= 0 and int(gt_labels.max()) < num_classes):
        raise InputError(f"gt_labels[{index}]: expected class ids in [0, {num_classes - 1}]")


def assign_anchors(
    anchors: torch.Tensor,
    gt_segments: torch.Tensor,
    gt_labels: torch.Tensor,
    cfg: ModelConfig,
    foreground_prob: torch.Tensor | None = None,
) -> AnchorTargets:
    """Targets for anchors ``[Na, 2]`` (centre, width) from ``gt_segments [M, 2]``, ``gt_labels [M]``.

    ``foreground_prob [Na]`` (1 - P(background), detached) ranks the negatives for hard mining.
    """
    num_anchors = anchors.size(0)
    labels = torch.full((num_anchors,), IGNORE, dtype=torch.int64, device=anchors.device)
    overlaps = anchors.new_zeros(num_anchors)
    deltas = anchors.new_zeros(num_anchors, 2)
    if gt_segments.numel() == 0:
        return AnchorTargets(labels, overlaps, deltas, 0)
    gt_segments = gt_segments.to(anchors)
    iou = segment_iou(anchor_based.anchors_to_segments(anchors), gt_segments)  # [Na, M]
    best_iou, best_gt = iou.max(dim=1)
    positive = best_iou > cfg.ab_match_iou
    labels[positive] = gt_labels.to(anchors.device)[best_gt[positive]] + 1
    overlaps[positive] = best_iou[positive]
    matched = gt_segments[best_gt[positive]]
    # A zero-length ground truth cannot be matched (IoU 0), so log(width) below stays finite.
    deltas[positive] = anchor_based.encode(matched, anchors[positive], cfg.ab_alpha, cfg.ab_beta)
    num_pos = int(positive.sum())
    negatives = (~positive).nonzero().squeeze(1)
    num_neg = min(round(cfg.ab_negative_ratio * num_pos), negatives.numel())
    if cfg.ab_negative_mining == "hard":
        if foreground_prob is None:
            raise ValueError("foreground_prob: required when cfg.ab_negative_mining is 'hard'")
        order = foreground_prob[negatives].topk(num_neg).indices
    else:
        order = torch.randperm(negatives.numel())[:num_neg].to(negatives.device)
    labels[negatives[order]] = 0
    num_unmatched = gt_segments.size(0) - int(torch.unique(best_gt[positive]).numel())
    return AnchorTargets(labels, overlaps, deltas, num_unmatched)


def assign_points(
    points: torch.Tensor, gt_segments: torch.Tensor, gt_labels: torch.Tensor, cfg: ModelConfig
) -> PointTargets:
    """Targets for points ``[Np, 2]`` (position, stride) from ``gt_segments [M, 2]``, ``gt_labels [M]``."""
    num_points = points.size(0)
    labels = torch.zeros(num_points, dtype=torch.int64, device=points.device)
    distances = points.new_zeros(num_points, 2)
    if gt_segments.numel() == 0:
        return PointTargets(labels, distances, 0)
    gt_segments = gt_segments.to(points)
    positions, strides = points[:, 0], points[:, 1]
    point_level = torch.log2(strides).round().long() - 1  # stride 2 -> level 0
    gt_level = _level_of_lengths(gt_segments[:, 1] - gt_segments[:, 0], cfg)
    inside = (positions[:, None] >= gt_segments[None, :, 0]) & (positions[:, None] <= gt_segments[None, :, 1])
    candidate = inside & (point_level[:, None] == gt_level[None, :])  # [Np, M]
    lengths = (gt_segments[:, 1] - gt_segments[:, 0])[None, :].expand(num_points, -1)
    lengths = torch.where(candidate, lengths, torch.full_like(lengths, float("inf")))
    chosen = lengths.argmin(dim=1)  # the shortest candidate; ties: the first ground truth
    foreground = candidate.any(dim=1)
    labels[foreground] = gt_labels.to(points.device)[chosen[foreground]] + 1
    units = anchor_free.regression_units(points, cfg)
    distances[foreground] = anchor_free.encode(
        positions[foreground], gt_segments[chosen[foreground]], units[foreground]
    )
    num_unassigned = gt_segments.size(0) - int(torch.unique(chosen[foreground]).numel())
    return PointTargets(labels, distances, num_unassigned)


def _level_of_lengths(lengths: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Level index (0-based) whose anchor-free range holds each length; -1 when none does."""
    level = torch.full_like(lengths, -1, dtype=torch.int64)
    for i, (low, high) in enumerate(cfg.af_ranges()):
        level[(lengths >= low) & (lengths < high) & (level < 0)] = i
    return level
