"""Prediction heads over a 1D pyramid (one level or several).

:class:`AnchorHead`: one conv per level predicting ``K`` values for each of ``A`` anchors per
position (A2Net's anchor-based head: 3x3 convs, ``K = C + 4``; R-C3D's proposal network: 1x1 convs,
``K = 4``). :class:`AnchorFreeHead`: A2Net's anchor-free module (per-level 1x1 projection to a common
width, then one classification and one regression tower shared by every level, the regression
scaled by a learnable factor per level). Outputs are ordered like the priors of
:mod:`rc3d_af.models.layers.priors`: level by level, then position (then anchor).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class AnchorHead(nn.Module):
    """``pyramid`` (``[B, C_i, L_i]`` per level) -> ``[B, sum(L_i) * A, K]``."""

    def __init__(
        self, level_channels: Sequence[int], num_anchors: int, num_outputs: int, kernel_size: int = 3
    ) -> None:
        super().__init__()
        self.num_anchors = num_anchors
        self.num_outputs = num_outputs
        self.predictors = nn.ModuleList(
            nn.Conv1d(c, num_anchors * num_outputs, kernel_size=kernel_size, padding=kernel_size // 2)
            for c in level_channels
        )

    def forward(self, pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
        per_level = []
        for feature, predictor in zip(pyramid, self.predictors, strict=True):
            out = predictor(feature)  # [B, A*K, L]
            batch, _, length = out.shape
            out = out.view(batch, self.num_anchors, self.num_outputs, length).permute(0, 3, 1, 2)
            per_level.append(out.reshape(batch, length * self.num_anchors, self.num_outputs))
        return torch.cat(per_level, dim=1)


def _tower(channels: int, out_channels: int) -> nn.Sequential:
    """conv3-ReLU-conv3-ReLU-conv3 (A2Net Table II "AF conv2", "AF conv3", "AF pred")."""
    return nn.Sequential(
        nn.Conv1d(channels, channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv1d(channels, channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv1d(channels, out_channels, kernel_size=3, padding=1),
    )


class AnchorFreeHead(nn.Module):
    """Per point: ``num_classes + 1`` logits (background first) and 2 boundary distances."""

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
