"""Training targets: which anchors and points each ground truth supervises, and with what.

Anchor-based (section III-C): an anchor is positive when its default segment (or, with
``ab_match_on="predictions"``, its decoded prediction) has IoU > 0.5 with a ground truth (the
highest-IoU ground truth wins); overlap target = that IoU; regression target =
equation (1) inverted; negatives (all other anchors) are sampled ``ab_negative_ratio`` per positive,
at random with torch's global CPU generator (a seeded run is deterministic on every device) or, with
``ab_negative_mining="hard"``, those with the highest predicted foreground probability.

Anchor-free (section III-D): a ground truth of length ``l`` belongs to the level whose range
``[low, high)`` holds ``l``; a point of that level is foreground when ``t_s <= j' <= t_e``. When
several ground truths of its level hold a point, the shortest wins.

Ground truths are in window positions; class ids are 0..C-1 and become targets 1..C (0 = background).
A batch is assigned in one vectorised pass: the windows' ground truths are padded to ``[B, M]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rc3d_af.errors import InputError
from rc3d_af.models import anchor_based, anchor_free
from rc3d_af.models.config import ModelConfig
from rc3d_af.ops import segment_iou

IGNORE = -1  # anchor label of an anchor left out of the classification loss


@dataclass
class AnchorTargets:
    """Targets of a batch of ``B`` windows with ``Na`` anchors each."""

    labels: torch.Tensor  # [B, Na] int64: 1..C positive, 0 sampled negative, IGNORE otherwise
    overlaps: torch.Tensor  # [B, Na] float: IoU with the matched ground truth (positives; 0 elsewhere)
    deltas: torch.Tensor  # [B, Na, 2] float: (delta_c, delta_w) targets (positives; 0 elsewhere)
    num_unmatched: int  # ground truths of the batch that no anchor matched


@dataclass
class PointTargets:
    """Targets of a batch of ``B`` windows with ``Np`` points each."""

    labels: torch.Tensor  # [B, Np] int64: 1..C foreground, 0 background
    distances: torch.Tensor  # [B, Np, 2] float: (start, end) in regression units (foreground; 0 elsewhere)
    num_unassigned: int  # ground truths of the batch that took no point


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
    gt_segments: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
    cfg: ModelConfig,
    foreground_prob: torch.Tensor | None = None,
    predicted: torch.Tensor | None = None,
) -> AnchorTargets:
    """Targets for anchors ``[Na, 2]`` (centre, width) from each window's ``gt_segments [M_b, 2]`` and
    ``gt_labels [M_b]``.

    ``foreground_prob [B, Na]`` (1 - P(background), detached) ranks the negatives for hard mining;
    ``predicted [B, Na, 2]`` (start, end; detached decoded predictions) is matched instead of the
    default anchors when ``cfg.ab_match_on == "predictions"``.
    """
    segments, labels, valid = _pad(gt_segments, gt_labels, anchors)
    batch, num_anchors = segments.size(0), anchors.size(0)
    if cfg.ab_match_on == "predictions":
        if predicted is None:
            raise ValueError("predicted: required when cfg.ab_match_on is 'predictions'")
        iou = torch.stack([segment_iou(predicted[b].to(anchors), segments[b]) for b in range(batch)])
    else:
        iou = segment_iou(anchor_based.anchors_to_segments(anchors), segments.view(-1, 2))  # [Na, B*M]
        iou = iou.view(num_anchors, batch, -1).permute(1, 0, 2)  # [B, Na, M]
    iou = torch.where(valid[:, None, :], iou, torch.full_like(iou, -1.0))
    best_iou, best_gt = iou.max(dim=2)  # [B, Na]; ties: the first ground truth
    positive = best_iou > cfg.ab_match_iou
    targets = torch.where(positive, labels.gather(1, best_gt) + 1, torch.full_like(best_gt, IGNORE))
    overlaps = torch.where(positive, best_iou, torch.zeros_like(best_iou))
    matched = segments.gather(1, best_gt[..., None].expand(-1, -1, 2))  # [B, Na, 2]
    deltas = anchors.new_zeros(batch, num_anchors, 2)
    # Only positives are encoded: a zero-length ground truth is never positive (IoU 0), so log() is finite.
    # Regression targets are relative to the default anchors whatever was matched.
    deltas[positive] = anchor_based.encode(
        matched[positive], anchors.expand(batch, -1, -1)[positive], cfg.ab_alpha, cfg.ab_beta
    )
    targets[_sample_negatives(positive, cfg, foreground_prob)] = 0
    return AnchorTargets(targets, overlaps, deltas, _count_untaken(best_gt, positive, valid))


def _sample_negatives(
    positive: torch.Tensor, cfg: ModelConfig, foreground_prob: torch.Tensor | None
) -> torch.Tensor:
    """``[B, Na]`` mask of ``round(ab_negative_ratio * positives)`` non-positive anchors per window."""
    num_anchors = positive.size(1)
    num_pos = positive.sum(dim=1)
    num_neg = torch.minimum(torch.round(cfg.ab_negative_ratio * num_pos), num_anchors - num_pos)
    if cfg.ab_negative_mining == "hard":
        if foreground_prob is None:
            raise ValueError("foreground_prob: required when cfg.ab_negative_mining is 'hard'")
        priority = foreground_prob.float()
    else:
        # Drawn on the CPU so that a seeded run picks the same anchors on every device.
        priority = torch.rand(positive.shape).to(positive.device)
    priority = priority.masked_fill(positive, -1.0)  # priorities are in [0, 1]
    order = priority.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(num_anchors, device=order.device).expand_as(order))
    return (rank < num_neg[:, None]) & ~positive


def assign_points(
    points: torch.Tensor,
    gt_segments: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
    cfg: ModelConfig,
) -> PointTargets:
    """Targets for points ``[Np, 2]`` (position, stride) from each window's ``gt_segments [M_b, 2]``
    and ``gt_labels [M_b]``."""
    segments, labels, valid = _pad(gt_segments, gt_labels, points)
    batch, num_points = segments.size(0), points.size(0)
    positions = points[:, 0]
    point_level = torch.log2(points[:, 1]).round().long() - 1  # stride 2 -> level 0
    lengths = segments[..., 1] - segments[..., 0]  # [B, M]
    gt_level = _level_of_lengths(lengths, cfg).masked_fill(~valid, -2)  # padding matches no level
    inside = (positions[None, :, None] >= segments[:, None, :, 0]) & (
        positions[None, :, None] <= segments[:, None, :, 1]
    )
    candidate = inside & (point_level[None, :, None] == gt_level[:, None, :])  # [B, Np, M]
    masked = torch.where(candidate, lengths[:, None, :], torch.full_like(lengths[:, None, :], float("inf")))
    chosen = masked.argmin(dim=2)  # [B, Np]: the shortest candidate; ties: the first ground truth
    foreground = candidate.any(dim=2)
    targets = torch.where(foreground, labels.gather(1, chosen) + 1, torch.zeros_like(chosen))
    matched = segments.gather(1, chosen[..., None].expand(-1, -1, 2))  # [B, Np, 2]
    units = anchor_free.regression_units(points, cfg)
    distances = anchor_free.encode(positions.repeat(batch), matched.flatten(0, 1), units.repeat(batch))
    distances = torch.where(foreground[..., None], distances.view(batch, num_points, 2), 0.0)
    return PointTargets(targets, distances, _count_untaken(chosen, foreground, valid))


def _pad(
    gt_segments: Sequence[torch.Tensor], gt_labels: Sequence[torch.Tensor], like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ground truths padded to ``segments [B, M, 2]`` (dtype/device of ``like``), ``labels [B, M]``
    and ``valid [B, M]``, with ``M >= 1``."""
    batch = len(gt_segments)
    width = max([1, *(len(s) for s in gt_segments)])
    segments = like.new_zeros(batch, width, 2)
    labels = torch.zeros(batch, width, dtype=torch.int64, device=like.device)
    valid = torch.zeros(batch, width, dtype=torch.bool, device=like.device)
    for b, (s, lab) in enumerate(zip(gt_segments, gt_labels, strict=True)):
        segments[b, : len(s)] = s.to(like)
        labels[b, : len(s)] = lab.to(like.device)
        valid[b, : len(s)] = True
    return segments, labels, valid


def _count_untaken(chosen: torch.Tensor, taken: torch.Tensor, valid: torch.Tensor) -> int:
    """Valid ground truths (``[B, M]``) that no position (``chosen [B, N]`` where ``taken``) points to."""
    width = valid.size(1)
    hits = torch.zeros(valid.size(0), width + 1, dtype=torch.bool, device=valid.device)
    hits.scatter_(1, torch.where(taken, chosen, width), True)  # non-taken positions land in column M
    return int((valid & ~hits[:, :width]).sum())


def _level_of_lengths(lengths: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Level index (0-based) whose anchor-free range holds each length; -1 when none does."""
    level = torch.full_like(lengths, -1, dtype=torch.int64)
    for i, (low, high) in enumerate(cfg.af_ranges()):
        level[(lengths >= low) & (lengths < high) & (level < 0)] = i
    return level
