"""Anchor-free localization module (paper section III-D): points, shared head, equation (3).

Points: location ``j`` of a level with accumulated stride ``s`` (window positions; 2 for AL1 after
the base max-pool) maps back to ``j' = floor(s / 2) + j * s`` (equation (2)). Points are ordered
level by level (finest first), then by position; the head's outputs follow the same order.

Equation (3): regression targets ``s* = j' - t_s`` and ``e* = t_e - j'``, expressed in regression
units: one AL1 cell (``BASE_STRIDE`` window positions, as the reference code) or the level's stride
when ``cfg.af_normalize_distances``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rc3d_af.models.config import ModelConfig

BASE_STRIDE = 2  # window positions per AL1 cell (the base conv's max-pool)


def point_grid(
    level_lengths: Sequence[int], level_strides: Sequence[int], device: torch.device | None = None
) -> torch.Tensor:
    """Points as ``[sum(L_i), 2]`` (position j', stride s), window positions, float32 (equation (2))."""
    per_level = []
    for length, stride in zip(level_lengths, level_strides, strict=True):
        positions = torch.arange(length, dtype=torch.float32, device=device) * stride + stride // 2
        per_level.append(torch.stack([positions, torch.full_like(positions, stride)], dim=-1))
    return torch.cat(per_level)


def regression_units(points: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Window positions per regression unit for each point, ``[Np]``."""
    if cfg.af_normalize_distances:
        return points[:, 1]
    return torch.full_like(points[:, 1], BASE_STRIDE)


def encode(points: torch.Tensor, segments: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Equation (3): distances ``[N, 2]`` (start, end) from points ``[N]`` to segments ``[N, 2]``,
    in regression units ``[N]``."""
    return torch.stack([points - segments[:, 0], segments[:, 1] - points], dim=-1) / units[:, None]


def decode(points: torch.Tensor, distances: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Inverse of equation (3): segments ``[N, 2]`` (start, end) in window positions."""
    scaled = distances * units[:, None]
    return torch.stack([points - scaled[:, 0], points + scaled[:, 1]], dim=-1)


def _tower(channels: int, out_channels: int) -> nn.Sequential:
    """conv3-ReLU-conv3-ReLU-conv3 (Table II "AF conv2", "AF conv3", "AF pred")."""
    return nn.Sequential(
        nn.Conv1d(channels, channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv1d(channels, channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv1d(channels, out_channels, kernel_size=3, padding=1),
    )


class AnchorFreeHead(nn.Module):
    """Per-level 1x1 conv to a common width (Table II "AF conv1"), then one head shared by all levels
    with a classification branch (C+1 logits) and a regression branch (2 distances) scaled by a
    learnable per-level factor."""

    def __init__(self, level_channels: Sequence[int], width: int, num_classes: int) -> None:
        super().__init__()
        self.projections = nn.ModuleList(
            nn.Sequential(nn.Conv1d(c, width, kernel_size=1), nn.ReLU(inplace=True)) for c in level_channels
        )
        self.cls_branch = _tower(width, num_classes + 1)
        self.reg_branch = _tower(width, 2)
        self.scales = nn.Parameter(torch.ones(len(level_channels)))

    def forward(self, pyramid: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``pyramid``: ``[B, C_i, L_i]`` per level -> ``af_cls [B, Np, C+1]``, ``af_reg [B, Np, 2]``."""
        cls, reg = [], []
        for i, (feature, projection) in enumerate(zip(pyramid, self.projections, strict=True)):
            x = projection(feature)
            cls.append(self.cls_branch(x).transpose(1, 2))
            reg.append((self.reg_branch(x) * self.scales[i]).transpose(1, 2))
        return {"af_cls": torch.cat(cls, dim=1), "af_reg": torch.cat(reg, dim=1)}
