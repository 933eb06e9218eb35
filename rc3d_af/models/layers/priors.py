"""Anchor and point generators over a 1D pyramid (window positions, float32).

A level of length ``L`` and accumulated stride ``s`` (window positions per cell) has cells
``[j * s, (j + 1) * s)``. Anchors sit at the cell centres ``(j + 0.5) * s`` with widths
``scale * s``; points sit at ``j * s + floor(s / 2)`` (A2Net equation (2)). Both are ordered level by
level (finest first), then by position (then by scale); heads emit their outputs in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def anchor_grid(
    level_lengths: Sequence[int],
    level_strides: Sequence[int],
    scales: Sequence[float],
    device: torch.device | None = None,
) -> torch.Tensor:
    """Anchors ``[sum(L_i) * A, 2]`` as (centre, width)."""
    per_level = []
    scale_t = torch.tensor(scales, dtype=torch.float32, device=device)
    for length, stride in zip(level_lengths, level_strides, strict=True):
        centres = (torch.arange(length, dtype=torch.float32, device=device) + 0.5) * stride
        centres = centres[:, None].expand(length, len(scales))
        widths = (scale_t * stride)[None, :].expand(length, len(scales))
        per_level.append(torch.stack([centres, widths], dim=-1).reshape(-1, 2))
    return torch.cat(per_level)


def point_grid(
    level_lengths: Sequence[int], level_strides: Sequence[int], device: torch.device | None = None
) -> torch.Tensor:
    """Points ``[sum(L_i), 2]`` as (position, stride)."""
    per_level = []
    for length, stride in zip(level_lengths, level_strides, strict=True):
        positions = torch.arange(length, dtype=torch.float32, device=device) * stride + stride // 2
        per_level.append(torch.stack([positions, torch.full_like(positions, stride)], dim=-1))
    return torch.cat(per_level)


def point_levels(level_lengths: Sequence[int], device: torch.device | None = None) -> torch.Tensor:
    """``[sum(L_i)]`` int64: the level index of each point of :func:`point_grid`."""
    levels = [
        torch.full((length,), i, dtype=torch.int64, device=device) for i, length in enumerate(level_lengths)
    ]
    return torch.cat(levels)


def doubling_length_ranges(level_strides: Sequence[int]) -> tuple[tuple[float, float], ...]:
    """A2Net's level ranges (section III-D: ``[2^(i-1), 2^i)`` cells of the finest level), written for
    any strides: level ``i`` takes ground truths of length ``[s_i, 2 s_i)`` window positions, the first
    level from 0 and the last open-ended (a single level takes every length)."""
    ranges = [[float(s), float(2 * s)] for s in level_strides]
    ranges[0][0] = 0.0
    ranges[-1][1] = math.inf
    return tuple((low, high) for low, high in ranges)
