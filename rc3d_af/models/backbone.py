"""Base conv layer and hierarchical feature module (paper Table II, sections III-A and III-B).

Input ``[B, D, T]`` -> base1 (1x1, 512) -> base2 (k9, 512) -> max-pool 2 -> AL1 (3x3, stride 1)
-> AL2..ALn (3x3, stride 2): level ``i`` has length ``T / 2**i`` and stride ``2**i`` window positions.
Every conv is followed by a ReLU.
"""

from __future__ import annotations

import torch
from torch import nn

from rc3d_af.models.config import ModelConfig


class BaseConv(nn.Sequential):
    """1x1 conv to ``channels`` (reduces D), conv ``kernel_size`` (temporal context), max-pool ``stride``
    (A2Net: 2; R-C3D's backbone: its output stride). ``[B, D, T] -> [B, channels, T / stride]``."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int, stride: int = 2) -> None:
        super().__init__(
            nn.Conv1d(in_channels, channels, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv1d(channels, channels, kernel_size=kernel_size, padding=kernel_size // 2),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(kernel_size=stride, stride=stride),
        )


class HierarchicalFeatures(nn.Module):
    """Base conv + pyramid; ``forward`` returns one ``[B, C_i, T / 2**i]`` tensor per level, finest first."""

    def __init__(self, cfg: ModelConfig, in_channels: int) -> None:
        super().__init__()
        base = cfg.channels(cfg.base_channels)
        self.base = BaseConv(in_channels, base, cfg.base_kernel_size)
        self.level_channels = [cfg.channels(c) for c in cfg.level_channels[: cfg.num_levels]]
        levels = []
        previous = base
        for i, channels in enumerate(self.level_channels):
            stride = 1 if i == 0 else 2
            levels.append(
                nn.Sequential(
                    nn.Conv1d(previous, channels, kernel_size=3, stride=stride, padding=1),
                    nn.ReLU(inplace=True),
                )
            )
            previous = channels
        self.levels = nn.ModuleList(levels)

    def forward(self, features: torch.Tensor) -> list[torch.Tensor]:
        x = self.base(features)
        pyramid = []
        for level in self.levels:
            x = level(x)
            pyramid.append(x)
        return pyramid
