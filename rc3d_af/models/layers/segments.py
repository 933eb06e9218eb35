"""Segment formats: (start, end) everywhere, (centre, width) only where priors are generated.

All functions work in any continuous unit (window positions in the models) and keep dtype and device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def centre_width_to_segments(priors: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` (centre, width) -> ``[..., 2]`` (start, end)."""
    half = priors[..., 1] / 2
    return torch.stack([priors[..., 0] - half, priors[..., 0] + half], dim=-1)


def segments_to_centre_width(segments: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` (start, end) -> ``[..., 2]`` (centre, width)."""
    return torch.stack(
        [(segments[..., 0] + segments[..., 1]) / 2, segments[..., 1] - segments[..., 0]], dim=-1
    )


def segments_to_rois(segments: Sequence[torch.Tensor]) -> torch.Tensor:
    """One ``[K_b, 2]`` tensor per window -> RoIs ``[sum K_b, 3]`` (window index, start, end), the
    input layout of :func:`rc3d_af.ops.roi_pool_1d` / :func:`rc3d_af.ops.roi_align_1d`."""
    rois = [torch.cat([torch.full_like(s[:, :1], float(b)), s], dim=1) for b, s in enumerate(segments)]
    return torch.cat(rois) if rois else torch.zeros(0, 3)
