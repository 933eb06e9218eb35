"""The anchor-free assignment (A2Net section III-D) and its distance coding, with explicit levels.

A ground truth of length ``l`` belongs to the first level whose range ``[low, high)`` holds ``l``; a
point of that level is foreground when ``start <= position <= end``, and when several ground truths
of its level hold a point, the shortest wins (ties: the first). Regression targets are the distances
to the boundaries (equation (3)), divided by each point's regression unit.

Points carry their level explicitly (``point_levels``), so any stride layout assigns correctly: a
single level of stride 1, 2 or 4, or A2Net's pyramid of strides 2, 4, 8, ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rc3d_af.models.layers.ground_truth import count_untaken


@dataclass
class PointTargets:
    """Targets of a batch of ``B`` windows with ``Np`` points each."""

    labels: torch.Tensor  # [B, Np] int64: 1..C foreground, 0 background
    distances: torch.Tensor  # [B, Np, 2] float: (start, end) in regression units (foreground; 0 elsewhere)
    num_unassigned: int  # ground truths of the batch that took no point


def encode_distances(points: torch.Tensor, segments: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Equation (3): distances ``[N, 2]`` (start, end) from points ``[N]`` to segments ``[N, 2]``,
    in regression units ``[N]``."""
    return torch.stack([points - segments[:, 0], segments[:, 1] - points], dim=-1) / units[:, None]


def decode_distances(points: torch.Tensor, distances: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Inverse of equation (3): segments ``[N, 2]`` (start, end) in window positions."""
    scaled = distances * units[:, None]
    return torch.stack([points - scaled[:, 0], points + scaled[:, 1]], dim=-1)


def assign_points(
    positions: torch.Tensor,
    levels: torch.Tensor,
    level_ranges: Sequence[tuple[float, float]],
    units: torch.Tensor,
    segments: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
) -> PointTargets:
    """Targets of points ``positions [Np]`` (window positions) on ``levels [Np]`` (int64 indices into
    ``level_ranges``, window positions) with regression ``units [Np]``, from padded ground truths
    ``segments [B, M, 2]``, ``labels [B, M]`` (0..C-1) and ``valid [B, M]``."""
    batch, num_points = segments.size(0), positions.size(0)
    lengths = segments[..., 1] - segments[..., 0]  # [B, M]
    gt_level = _level_of_lengths(lengths, level_ranges).masked_fill(~valid, -2)  # padding: no level
    inside = (positions[None, :, None] >= segments[:, None, :, 0]) & (
        positions[None, :, None] <= segments[:, None, :, 1]
    )
    candidate = inside & (levels[None, :, None] == gt_level[:, None, :])  # [B, Np, M]
    masked = torch.where(candidate, lengths[:, None, :], torch.full_like(lengths[:, None, :], float("inf")))
    chosen = masked.argmin(dim=2)  # [B, Np]: the shortest candidate; ties: the first ground truth
    foreground = candidate.any(dim=2)
    targets = torch.where(foreground, labels.gather(1, chosen) + 1, torch.zeros_like(chosen))
    matched = segments.gather(1, chosen[..., None].expand(-1, -1, 2))  # [B, Np, 2]
    distances = encode_distances(positions.repeat(batch), matched.flatten(0, 1), units.repeat(batch))
    distances = torch.where(foreground[..., None], distances.view(batch, num_points, 2), 0.0)
    return PointTargets(targets, distances, count_untaken(chosen, foreground, valid))


def _level_of_lengths(lengths: torch.Tensor, level_ranges: Sequence[tuple[float, float]]) -> torch.Tensor:
    """Level index (0-based) whose range holds each length; -1 when none does."""
    level = torch.full_like(lengths, -1, dtype=torch.int64)
    for i, (low, high) in enumerate(level_ranges):
        level[(lengths >= low) & (lengths < high) & (level < 0)] = i
    return level
