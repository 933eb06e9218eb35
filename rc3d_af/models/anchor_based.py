"""Anchor-based localization module (paper section III-C): default anchors, head, equation (1).

Anchors sit at the centre of every cell of every level (``j * s + s / 2`` window positions for a
level of stride ``s``) with widths ``scale * s`` for each of ``cfg.anchor_scales``. Anchors are
ordered level by level (finest first), then by position, then by scale; the head's outputs follow
the same order.

Equation (1): ``c = c_d + alpha * delta_c * w_d`` and ``w = w_d * exp(beta * delta_w)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# exp() argument cap when decoding widths: keeps an untrained head from producing inf (a width of
# e^8 ~ 3000 anchor widths is already far outside any window).
MAX_LOG_SCALE = 8.0


def anchor_grid(
    level_lengths: Sequence[int],
    level_strides: Sequence[int],
    scales: Sequence[float],
    device: torch.device | None = None,
) -> torch.Tensor:
    """Default anchors as ``[sum(L_i) * A, 2]`` (centre, width), window positions, float32."""
    per_level = []
    scale_t = torch.tensor(scales, dtype=torch.float32, device=device)
    for length, stride in zip(level_lengths, level_strides, strict=True):
        centres = (torch.arange(length, dtype=torch.float32, device=device) + 0.5) * stride
        centres = centres[:, None].expand(length, len(scales))
        widths = (scale_t * stride)[None, :].expand(length, len(scales))
        per_level.append(torch.stack([centres, widths], dim=-1).reshape(-1, 2))
    return torch.cat(per_level)


def anchors_to_segments(anchors: torch.Tensor) -> torch.Tensor:
    """``[N, 2]`` (centre, width) -> ``[N, 2]`` (start, end)."""
    half = anchors[:, 1] / 2
    return torch.stack([anchors[:, 0] - half, anchors[:, 0] + half], dim=-1)


def encode(segments: torch.Tensor, anchors: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Regression targets (delta_c, delta_w) ``[N, 2]`` of ``segments`` ``[N, 2]`` (start, end > start)
    relative to ``anchors`` ``[N, 2]`` (centre, width): the inverse of equation (1)."""
    centres = (segments[:, 0] + segments[:, 1]) / 2
    widths = segments[:, 1] - segments[:, 0]
    delta_c = (centres - anchors[:, 0]) / (alpha * anchors[:, 1])
    delta_w = torch.log(widths / anchors[:, 1]) / beta
    return torch.stack([delta_c, delta_w], dim=-1)


def decode(deltas: torch.Tensor, anchors: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Equation (1): ``[N, 2]`` (delta_c, delta_w) + anchors (centre, width) -> ``[N, 2]`` (start, end)."""
    centres = anchors[:, 0] + alpha * deltas[:, 0] * anchors[:, 1]
    widths = anchors[:, 1] * torch.exp((beta * deltas[:, 1]).clamp(max=MAX_LOG_SCALE))
    return torch.stack([centres - widths / 2, centres + widths / 2], dim=-1)


class AnchorBasedHead(nn.Module):
    """One 3x3 conv per level predicting, for each of A anchors, C+1 class logits, an overlap logit
    and (delta_c, delta_w): ``A * (C + 4)`` channels (Table II "AB pred", whose C counts background)."""

    def __init__(self, level_channels: Sequence[int], num_anchors: int, num_classes: int) -> None:
        super().__init__()
        self.num_anchors = num_anchors
        self.num_outputs = num_classes + 4  # C+1 class logits, overlap, delta_c, delta_w
        self.predictors = nn.ModuleList(
            nn.Conv1d(c, num_anchors * self.num_outputs, kernel_size=3, padding=1) for c in level_channels
        )

    def forward(self, pyramid: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``pyramid``: ``[B, C_i, L_i]`` per level -> ``ab_cls [B, Na, C+1]``, ``ab_overlap [B, Na]``,
        ``ab_reg [B, Na, 2]`` with ``Na = sum(L_i) * A``."""
        per_level = []
        for feature, predictor in zip(pyramid, self.predictors, strict=True):
            out = predictor(feature)  # [B, A*K, L]
            batch, _, length = out.shape
            out = out.view(batch, self.num_anchors, self.num_outputs, length).permute(0, 3, 1, 2)
            per_level.append(out.reshape(batch, length * self.num_anchors, self.num_outputs))
        out = torch.cat(per_level, dim=1)
        return {"ab_cls": out[..., :-3], "ab_overlap": out[..., -3], "ab_reg": out[..., -2:]}
