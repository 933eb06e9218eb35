"""A2Net's training targets: which anchors and points each ground truth supervises, and with what.

The policy of the paper, on the shared parts of :mod:`rc3d_af.models.layers`:

Anchor-based (section III-C): an anchor is positive when its default segment (or, with
``ab_match_on="predictions"``, its decoded prediction) has IoU > 0.5 with a ground truth (the
highest-IoU ground truth wins; the shared :class:`Matcher` with ``strict=True``); overlap target =
that IoU; regression target = equation (1) inverted; negatives (all other anchors) are sampled
``ab_negative_ratio`` per positive, at random with torch's global CPU generator (a seeded run is
deterministic on every device) or, with ``ab_negative_mining="hard"``, those with the highest
predicted foreground probability.

Anchor-free (section III-D): the shared point assignment with A2Net's level ranges
(``cfg.af_ranges()``); each point's level is found from its stride among ``cfg.level_strides``.

Ground truths are in window positions; class ids are 0..C-1 and become targets 1..C (0 = background).
A batch is assigned in one vectorised pass: the windows' ground truths are padded to ``[B, M]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rc3d_af.models import anchor_based, anchor_free
from rc3d_af.models.config import ModelConfig
from rc3d_af.models.layers.ground_truth import check_ground_truth, count_untaken, pad_ground_truth
from rc3d_af.models.layers.matcher import IGNORE, NEGATIVE, POSITIVE, Matcher
from rc3d_af.models.layers.point_assigner import PointTargets
from rc3d_af.models.layers.point_assigner import assign_points as assign_point_targets
from rc3d_af.models.layers.sampling import top_priority, uniform
from rc3d_af.ops import segment_iou

__all__ = [
    "IGNORE",
    "AnchorTargets",
    "PointTargets",
    "assign_anchors",
    "assign_points",
    "check_ground_truth",
]


@dataclass
class AnchorTargets:
    """Targets of a batch of ``B`` windows with ``Na`` anchors each."""

    labels: torch.Tensor  # [B, Na] int64: 1..C positive, 0 sampled negative, IGNORE otherwise
    overlaps: torch.Tensor  # [B, Na] float: IoU with the matched ground truth (positives; 0 elsewhere)
    deltas: torch.Tensor  # [B, Na, 2] float: (delta_c, delta_w) targets (positives; 0 elsewhere)
    num_unmatched: int  # ground truths of the batch that no anchor matched


def assign_anchors(
    anchors: torch.Tensor,
    gt_segments: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
    cfg: ModelConfig,
    foreground_prob: torch.Tensor | None = None,
    predicted: torch.Tensor | None = None,
    *,
    generators: Sequence[torch.Generator] | None = None,
) -> AnchorTargets:
    """Targets for anchors ``[Na, 2]`` (centre, width) from each window's ``gt_segments [M_b, 2]`` and
    ``gt_labels [M_b]``.

    ``foreground_prob [B, Na]`` (1 - P(background), detached) ranks the negatives for hard mining;
    ``predicted [B, Na, 2]`` (start, end; detached decoded predictions) is matched instead of the
    default anchors when ``cfg.ab_match_on == "predictions"``; ``generators`` (one per window) draw
    the random negatives, torch's global CPU generator when None.
    """
    segments, labels, valid = pad_ground_truth(gt_segments, gt_labels, anchors)
    batch, num_anchors = segments.size(0), anchors.size(0)
    if cfg.ab_match_on == "predictions":
        if predicted is None:
            raise ValueError("predicted: required when cfg.ab_match_on is 'predictions'")
        iou = torch.stack(
            [segment_iou(predicted[b].to(anchors), segments[b], check_values=False) for b in range(batch)]
        )
    else:
        iou = segment_iou(
            anchor_based.anchors_to_segments(anchors), segments.view(-1, 2), check_values=False
        )  # [Na, B*M]
        iou = iou.view(num_anchors, batch, -1).permute(1, 0, 2)  # [B, Na, M]
    matches = Matcher([cfg.ab_match_iou], [NEGATIVE, POSITIVE], strict=True)(iou, valid)
    positive = matches.labels == POSITIVE
    ignored = torch.full_like(matches.index, IGNORE)
    targets = torch.where(positive, labels.gather(1, matches.index) + 1, ignored)
    overlaps = torch.where(positive, matches.quality, torch.zeros_like(matches.quality))
    matched = segments.gather(1, matches.index[..., None].expand(-1, -1, 2))  # [B, Na, 2]
    deltas = anchors.new_zeros(batch, num_anchors, 2)
    # Only positives are encoded: a zero-length ground truth is never positive (IoU 0), so log() is finite.
    # Regression targets are relative to the default anchors whatever was matched.
    deltas[positive] = anchor_based.encode(
        matched[positive], anchors.expand(batch, -1, -1)[positive], cfg.ab_alpha, cfg.ab_beta
    )
    targets[_sample_negatives(positive, cfg, foreground_prob, generators)] = 0
    return AnchorTargets(targets, overlaps, deltas, count_untaken(matches.index, positive, valid))


def _sample_negatives(
    positive: torch.Tensor,
    cfg: ModelConfig,
    foreground_prob: torch.Tensor | None,
    generators: Sequence[torch.Generator] | None,
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
        priority = uniform(tuple(positive.shape), generators, positive.device)
    return top_priority(~positive, num_neg, priority)


def assign_points(
    points: torch.Tensor,
    gt_segments: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
    cfg: ModelConfig,
) -> PointTargets:
    """Targets for points ``[Np, 2]`` (position, stride) from each window's ``gt_segments [M_b, 2]``
    and ``gt_labels [M_b]``."""
    segments, labels, valid = pad_ground_truth(gt_segments, gt_labels, points)
    strides = torch.tensor(cfg.level_strides, dtype=points.dtype, device=points.device)
    on_level = points[:, 1, None] == strides[None, :]  # [Np, L]
    if not bool(on_level.any(dim=1).all()):
        raise ValueError(f"points: every stride must be one of the model's level strides {cfg.level_strides}")
    levels = on_level.to(torch.int64).argmax(dim=1)
    units = anchor_free.regression_units(points, cfg)
    return assign_point_targets(points[:, 0], levels, cfg.af_ranges(), units, segments, labels, valid)
